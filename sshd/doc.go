// Package sshd is keygate's SSH server: public-key and certificate
// authentication from an in-memory index, git over SSH and bastion
// forwarding. It depends on the keystore only through the small interface it
// declares.
package sshd
