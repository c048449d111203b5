// Package sshd is keygate's SSH server: public-key and certificate
// authentication from an in-memory index, git over SSH and bastion
// forwarding. It reads the in-memory auth index only through the
// Authorizer interface it declares (keystore/authindex implements it), and
// uses keystore's model types and repository paths; it never queries the
// database on the authentication path.
package sshd
