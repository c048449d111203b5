package sshd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net"
	"strings"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"

	"github.com/keygate/keygate/keystore"
	"github.com/keygate/keygate/keystore/authindex"
)

// FuzzDecide feeds arbitrary public-key blobs (and SSH login names) to the
// authentication decision and checks it against an independent model of
// SPEC §5: it never panics, never accepts a key or certificate that the
// fake keystore does not vouch for, and every acceptance satisfies every
// rule. The seed corpus holds real OpenSSH key and certificate blobs.
//
// Keys, CAs and certificates are fixed (made once with ssh-keygen and
// pasted below) and the server's clock is fixed, so the corpus stays
// meaningful across runs.

// Public keys made with ssh-keygen (OpenSSH 9.2); their private halves were
// thrown away.
const (
	fzCA              = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+Nq fuzz-ca`
	fzCARSA           = `ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCX/RSXSpvcVW2dAmrygHbFRizlQf1vI/7xFxC3moXCVbDFhHuQGthks8D812on/h4DXSbK+OfcnVPaP64ikHVfMVjR5e8BOvZ9PxkM/9M5iNHJe5Z/Nl3Ix5TLkR3+wH5ksyjLcAyQNuR3iAUKbRxWrLYmP0YMcJgjNqPfo1GXhDs3hURp4uG8U5hG+4byTVGu4vZEzmb4ieE9p2tbKLTD39eCvw7yoQEkc9JPBQF/B9PgyOlH0ksU9vnDBlc1OVi9vUDgRmM41dxEzadJSsFlU+e1mg/5xr9U1v2436kKZQ291xKLMg60/u8s5MWw+Vb96I0GwkMmjtuxPL/w7N3P fuzz-ca-rsa`
	fzCAOther         = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKkQNCtnI9tQWE8w0VGQXPi5Q5K73TVD+zdb9Uc5xXMn other-ca`
	fzAliceKey        = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEgkzyweOKjv8vVWlB1hT5IB895ehagjhy5JeR4GTlGh alice`
	fzAliceSigningKey = `ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBCZ2fMMoOrnUfszVfMX7UNHFgyZe3KwmzD/fmWzBvNcMVIVwNGNFl1GiMtu9Ag9I8/JoCo8tdks5qNlRAWTrsbQ= alice-signing`
	fzAliceExpiredKey = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJRscEF+VDtRo8d8NoDtCJnlefKKFX+bTtO//NXXhYQM alice-old`
	fzBobKey          = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa5476VovJnMr/WCC3AtyrrKooDLCAc1dW413DhJMmv bob`
	fzStrangerKey     = `ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCpIaaCtE24YWZMTJy3WNIIiwwn30Cf45qhIjVweeIcluTBLuQ18siOqvH7J+6spcdiX6xo1tIRpHr6V7Vr53kzzhFPb7p/mefKZR6WHV/ZU8lW86DEv5KCjTN5o+GMv98cMoSNcbVSaiZHhqFSP8HfgV68hLS3MYyi+CO8/Bjfqci7OsAlLgKsTYsZQE/cA6Em0MRcLthzwj+L0516I51vGMqbzD7yV7N9EkWNTgh01z9zLsqoUTD6YzEd/mUn4gk/3LgDTzBsZtkawm8MnAEUfcYb8i+fstMUDNQJMIT/72QBONB5v+j+YXqC8P4oYzkgpt+t8fYrAMkvZi6uoYfv stranger`
	fzSubjectKey      = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlb subject`
)

// fzCerts are certificates of fzSubjectKey made with ssh-keygen -s, valid
// 2025-01-01..2030-01-01 unless named otherwise. name: what makes it special.
var fzCerts = []struct{ name, line string }{
	{"valid", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIL4q0xU03tExSv31Sj81eunG3T1YCkLIov8E9eduu17+AAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAACoAAAABAAAABWFsaWNlAAAAEAAAAANnaXQAAAAFYWxpY2UAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQD2sFNur7K/cSc0OLxdzTrgTgSJVj6kmAXVN8hemReREI0tSduwSJK6otwjxhlbeyiWmxAyUCr8WM7YehTnx/AQ= subject`},
	{"email", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIMbHE/fUVDgijDImfLxcYWytAchLFKmTL9IiG6FZd+5QAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAACsAAAABAAAAEWFsaWNlQGV4YW1wbGUuY29tAAAAEAAAAANnaXQAAAAFYWxpY2UAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQK7xQawjtEbQqWyTCgWdBF+Uj/pk/s56y4R6WAygnWV+TNcs8lnyTuQrzivMdsgxAksu6WdFEXeIJIFR2whNWwQ= subject`},
	{"ext", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAII7/ZJcR6SVB2GeUR/E8UvycPh88bB5w6VboC3PO/U8XAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAACwAAAABAAAABm5vYm9keQAAAAAAAAAAZ3SFgAAAAABw29iAAAAAAAAAAKUAAAASbG9naW5AZnV6ei5leGFtcGxlAAAACQAAAAVhbGljZQAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACC/KF5shGB0XCFiLynP/7BeiNBqUavPjlhyEfL8v1vjagAAAFMAAAALc3NoLWVkMjU1MTkAAABA8un5Mifjj/RLgPFnTyKTjIc11/0l+K+p+swCZFxB8X9CyxZknXhZM8mZDewbGzdRtA3enScAimMKegvoNxiUAA== subject`},
	{"noprinc", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIKKXZygHMLqfoIITrBqGZpS/UayfV/taitHdskvpMji3AAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAAC0AAAABAAAABWFsaWNlAAAAAAAAAABndIWAAAAAAHDb2IAAAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACC/KF5shGB0XCFiLynP/7BeiNBqUavPjlhyEfL8v1vjagAAAFMAAAALc3NoLWVkMjU1MTkAAABAnXGuIltCfBAbDYWAI8SpirkYS7o5JPT/oAsK66ZaBPlvnVhit/dIyU0NJbIAVANENnrnumuM2tr55fkXzH6hBQ== subject`},
	{"srcok", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIHMhUsS4TxW9cxCuqA/o/mDIMUndy9fy0E04xRAXL1ZOAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAAC4AAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAJgAAAA5zb3VyY2UtYWRkcmVzcwAAABAAAAAMMTI3LjAuMC4xLzMyAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACC/KF5shGB0XCFiLynP/7BeiNBqUavPjlhyEfL8v1vjagAAAFMAAAALc3NoLWVkMjU1MTkAAABAfvj8C4C4fLyuLEu5St2n7iJUl+5IhBTi0arSTx+jAnp7W37Jjmsu7rYHrwumK0D7M61EBS4RMo4d8dghaF8WCA== subject`},
	{"srcbad", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIGfWIa7aOBlgqd8JmO++L1/zNEgRf8UncK/Usc1g2l54AAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAAC8AAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAJQAAAA5zb3VyY2UtYWRkcmVzcwAAAA8AAAALMTAuMS4yLjMvMzIAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+NqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAECVvBc3hf5R+woUAUFT+YM7ApqYehcnxdH0kf0SaOAxLxX1pA5ZkXm5xSaoqMktkZY88IR5KMdPKzUQWu2uVBoL subject`},
	{"force", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIDf2rMx//6yZY+lWJZ2jtX3XBbC0wCYzGTWdOQGQJStrAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADAAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAIgAAAA1mb3JjZS1jb21tYW5kAAAADQAAAAkvYmluL3RydWUAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+NqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAECpOGR+MyLxR9iuFjDkvW54QMR2Pd0ky3H6t9YDCyWlPTLTBzDulHrHS1MuzklFtaPdTSg1IqkTwSUvJHApPr8N subject`},
	{"host", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIBmJvtgp2TyGAmO63AMxhtwRKa2Ee6XxJ61mb5lr8HyeAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADEAAAACAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACC/KF5shGB0XCFiLynP/7BeiNBqUavPjlhyEfL8v1vjagAAAFMAAAALc3NoLWVkMjU1MTkAAABAePFey+RHT7IZTiIq9IhEZUsLe54pKevQhbI3tgrHbgufopaSJtI/TPiuTG+OZZ6BZpdKf4Acio8yW62Q542kCQ== subject`},
	{"expired", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIMItRbLLnya3Yy6Ios4k8NY43rGxTILkCq0vvR4DLjBgAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADIAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAXgvhAAAAAABeDTKAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQOFWW1vuLH40j553JFdemDO3+YOZn0bi6OSKIlqZQduLQrin8gMD5sJ3Bs98cqOVKZ3+VY7aREGoI1bifKWGsAw= subject`},
	{"future", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIBkW9mN6XNyWFA2+aGNjRYqzTHwYCjrIM9ZZaqlUie4wAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADMAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAbvqlAAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQONOrIkCORkFR5BweZuUrw+nqKWII8Vi2OEEXuRAiGMg7EzpCuEb+Tvor5jKYWNa1rvdYoHEGAdQtseScOOl0wI= subject`},
	{"revoked", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIO37JoCqgJ4+GhQkIDGKcwtYDqzrohdeeyAcd1w2BU/WAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAAAcAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQPsP0/DM6fO3WDMAAGPTjpJkm1+xvuYV/MpeO+JFoNdbyTSQb4lm0T1Uzm0/9PnO1VvRYARmPRm37EGB0mfBCQ8= subject`},
	{"blocked", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIFBfoEbg0S5MbV6lRY/80QFO3sDJjdTZh6VXi5+FNCwAAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADQAAAABAAAAA2JvYgAAAAcAAAADZ2l0AAAAAGd0hYAAAAAAcNvYgAAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+NqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEC2EwGFAkOJ7sr5aHQwrJ3T1gJRjbjc8zEELaj+tTglNzcbXmgjueJEg7KZJCFDTWNXCWufp+OwTimh+RXao6IL subject`},
	{"nomember", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIIwHGmxuz7UJM/knIjCWVEbTHMdpojaGOyctE6bel44pAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADUAAAABAAAABWNhcm9sAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgvyhebIRgdFwhYi8pz/+wXojQalGrz45YchHy/L9b42oAAABTAAAAC3NzaC1lZDI1NTE5AAAAQIEJWu6/A2N3WVFAWmvWr7m6PnWWskZ/fJcjFKLPGTutsGNuICbFmwQBIzQM44UQTDeZz2xihHr2cNQdR98CoA4= subject`},
	{"nobody", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIIUQY2kW/DIhnVIgO+BIz18zfAP/gQB+lT8IxhNpfdKNAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADYAAAABAAAABm5vYm9keQAAAAcAAAADZ2l0AAAAAGd0hYAAAAAAcNvYgAAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+NqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEAenF95dyY50z5Gss7opzDohmo714ip1ouECZy4kVFHoK5UipTtHNKngdkrM17hom+fSwgiUPl5lPMxY1deiwUE subject`},
	{"root", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIO9U1JVsnmCryeq1KUCcx21jlSqO0msyQm/vfkWBOIpvAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADcAAAABAAAABWFsaWNlAAAACAAAAARyb290AAAAAGd0hYAAAAAAcNvYgAAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIL8oXmyEYHRcIWIvKc//sF6I0GpRq8+OWHIR8vy/W+NqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEBgPr470Hv9/pKsPpzXZihIC/CeHUITFhNBHHpLugv0AYti3X23MZV/lRc2X2S8Ghs9gzm2H/F5bTmJPUNvk0oF subject`},
	{"sha1", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAqTmg1iNUMZXauUxk4vxCrnnQrd20l6RECZ98xr4m7iAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADgAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAARcAAAAHc3NoLXJzYQAAAAMBAAEAAAEBAJf9FJdKm9xVbZ0CavKAdsVGLOVB/W8j/vEXELeahcJVsMWEe5Aa2GSzwPzXaif+HgNdJsr459ydU9o/riKQdV8xWNHl7wE69n0/GQz/0zmI0cl7ln82XcjHlMuRHf7AfmSzKMtwDJA25HeIBQptHFastiY/RgxwmCM2o9+jUZeEOzeFRGni4bxTmEb7hvJNUa7i9kTOZviJ4T2na1sotMPf14K/DvKhASRz0k8FAX8H0+DI6UfSSxT2+cMGVzU5WL29QOBGYzjV3ETNp0lKwWVT57WaD/nGv1TW/bjfqQplDb3XEosyDrT+7yzkxbD5Vv3ojQbCQyaO27E8v/Ds3c8AAAEPAAAAB3NzaC1yc2EAAAEAAlUggN9Y9ZFl3dpwUA9gh8fHWNPFLyK23l8m4WLUebazgtQDNa57ZSVOfYuVJrQ7ipupnpEQBzBOhfCW9Vis1AzdnvKzYns8r37B1dfvDotlXmsgRpIvuEcUPU4KefYf0n42Vc+kbnSnp7xDtw4WWsROj8459aqZQOzmI9JThGGt0dHp4EE7Nz+MH5upyU0AwZ7gm9xBbxcNolFtRC6IBEAy0mhNLH7uUG5wKCp/+gzQMKSXcyjsWT1lG/95SCMsz8fOfI1FDjB1azWGsOa2JHk2sjuWyycFkunvaGF4yxxtI8XLGTWrbAE+gbrpVcLFGWsZTyLUmnPXJ/9yRjuFMQ== subject`},
	{"sha512", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIPGGHDauR6yWLd3HQ1giEKZy4Rv3uWwYLnYgDbd89Z3mAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADkAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAARcAAAAHc3NoLXJzYQAAAAMBAAEAAAEBAJf9FJdKm9xVbZ0CavKAdsVGLOVB/W8j/vEXELeahcJVsMWEe5Aa2GSzwPzXaif+HgNdJsr459ydU9o/riKQdV8xWNHl7wE69n0/GQz/0zmI0cl7ln82XcjHlMuRHf7AfmSzKMtwDJA25HeIBQptHFastiY/RgxwmCM2o9+jUZeEOzeFRGni4bxTmEb7hvJNUa7i9kTOZviJ4T2na1sotMPf14K/DvKhASRz0k8FAX8H0+DI6UfSSxT2+cMGVzU5WL29QOBGYzjV3ETNp0lKwWVT57WaD/nGv1TW/bjfqQplDb3XEosyDrT+7yzkxbD5Vv3ojQbCQyaO27E8v/Ds3c8AAAEUAAAADHJzYS1zaGEyLTUxMgAAAQCFghVoTBaUlhxUfuZj1W9yNe0iYEc/k3bAbMqLrtxCiGWZb8BQYBN3epL0QWyIyqbwlRWIycgvylhXAqwrg+qBX5bjdKVsnxaG6J//M43IiXcNwrUjvXC7PSrcV6ZHZ810Q+W2Bzo71S6ft1rHLqBQFi07z2ldtnk1B0agYTxKABzZX0eTTHdZYaiiQKC/RuUJFN3WALIvP3Eq314wJIw5x199FCXUEX17gC/iZUbCbFoWdi1gb3+m0MjBXUF3EdcHW6FTnf0iyK59ZtTxv6hatJtMzs/VO4rEou6Dn33xMYuHsb3nHhOJ1lZKC+UfZI0M5ZfBjkUzAX0/Fwu8fv0v subject`},
	{"otherca", `ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIAX0/yGJbzn/3MZMxtxJnc8axnsm4B1NPuJaD2XcbuhsAAAAIPD8cI5CaHXTo4O2mPz1oAYEnA740a974ubcDgVQqdlbAAAAAAAAADoAAAABAAAABWFsaWNlAAAABwAAAANnaXQAAAAAZ3SFgAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgqRA0K2cj21BYTzDRUZBc+LlDkrvdNUP7N1v1RznFcycAAABTAAAAC3NzaC1lZDI1NTE5AAAAQFe7UdSPNCDowlcMfl//iFoS6qFEKYslN5fhxS0T7QMTcppUW0uFQaO8VC3HH2sHDVcG0Ih/aAqbTqLtV5nM4Qw= subject`},
}

// fzNow is the server's clock in the fuzz test.
var fzNow = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

const fzHostname = "fuzz.example"

// fzRemote is the client address decideCert sees.
var fzRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50022}

// fzWantAccepted is the decision each seed must get with login "git".
var fzWantAccepted = map[string]bool{
	"valid": true, "email": true, "ext": true, "noprinc": true, "srcok": true, "sha512": true,
	"srcbad": false, "force": false, "host": false, "expired": false, "future": false, "revoked": false,
	"blocked": false, "nomember": false, "nobody": false, "root": false, "sha1": false, "otherca": false,
}

type fzUser struct {
	name, email string
	active      bool
	enterprise  int64
}

type fzKey struct {
	k       authindex.Key
	canAuth bool
}

// fzAuth is a small in-memory Authorizer: alice (member of group 10),
// bob (blocked member), carol (active, member of no group); CAs fzCA and
// fzCARSA belong to group 10; CA 100 revoked serial 7 and key id
// "revoked-id".
type fzAuth struct {
	users   map[int64]fzUser
	keys    map[[32]byte]fzKey
	keyIDs  map[int64]bool
	cas     map[[32]byte]authindex.CA
	caIDs   map[int64]bool
	members map[[2]int64]int // {group, user}
	groups  map[int64]authindex.Group
	serials map[[2]uint64]bool // {ca, serial}
	keyIDRv map[int64]string
}

func (a *fzAuth) Key(fp [32]byte) (authindex.Key, bool) {
	k, ok := a.keys[fp]
	return k.k, ok
}
func (a *fzAuth) DeployKey(int64) (authindex.DeployKey, bool)     { return authindex.DeployKey{}, false }
func (a *fzAuth) DeployAccess(int64, int64, int64) (bool, bool)   { return false, false }
func (a *fzAuth) ProjectGroup(int64) (int64, bool)                { return 0, false }
func (a *fzAuth) KeyPolicy() *keystore.KeyPolicy                  { return &keystore.KeyPolicy{} }
func (a *fzAuth) GroupKeyPolicy(int64) (keystore.KeyPolicy, bool) { return keystore.KeyPolicy{}, false }
func (a *fzAuth) KeyShape([32]byte) (authindex.KeyShape, bool)    { return authindex.KeyShape{}, false }
func (a *fzAuth) BastionTargets(int64, int64, bool, string, uint32) []authindex.BastionMatch {
	return nil
}
func (a *fzAuth) User(id int64) (authindex.User, bool) {
	u, ok := a.users[id]
	return authindex.User{ID: id, Active: u.active, EnterpriseGroupID: u.enterprise}, ok
}
func (a *fzAuth) UserBlocked(id int64) bool {
	u, ok := a.users[id]
	return !ok || !u.active
}
func (a *fzAuth) UsernameIs(id int64, name string) bool {
	u, ok := a.users[id]
	return ok && strings.EqualFold(u.name, name)
}
func (a *fzAuth) Username(id int64) string { return a.users[id].name }
func (a *fzAuth) UserByLogin(login string) (authindex.User, bool) {
	for id, u := range a.users {
		if strings.EqualFold(u.name, login) || strings.EqualFold(u.email, login) {
			return authindex.User{ID: id, Active: u.active, EnterpriseGroupID: u.enterprise}, true
		}
	}
	return authindex.User{}, false
}
func (a *fzAuth) CAKnown(fp [32]byte) bool {
	_, ok := a.cas[fp]
	return ok
}
func (a *fzAuth) CA(fp [32]byte, groupID int64) (authindex.CA, bool) {
	c, ok := a.cas[fp]
	return c, ok && c.GroupID == groupID
}
func (a *fzAuth) CAExists(id int64) bool { return a.caIDs[id] }

// ManagedCA: the fuzzer's CAs are uploaded ones (a CI job option in their
// certificates always refuses them).
func (a *fzAuth) ManagedCA([32]byte) (authindex.CA, bool) { return authindex.CA{}, false }
func (a *fzAuth) Revoked(groupID int64, caFP [32]byte, serial uint64, keyID, _ string, _ int64) bool {
	ca, ok := a.CA(caFP, groupID)
	if !ok {
		return false
	}
	caID := ca.ID
	return a.serials[[2]uint64{uint64(caID), serial}] || (a.keyIDRv[caID] != "" && a.keyIDRv[caID] == keyID)
}
func (a *fzAuth) Group(id int64) (authindex.Group, bool) {
	g, ok := a.groups[id]
	return g, ok
}
func (a *fzAuth) AccessLevel(userID, groupID int64) int { return a.members[[2]int64{groupID, userID}] }

type fzProjects struct{}

func (fzProjects) ProjectByPath(context.Context, string) (*keystore.Project, error) {
	return nil, keystore.ErrNotFound
}

func fzParse(tb testing.TB, line string) gossh.PublicKey {
	tb.Helper()
	k, _, _, _, err := gossh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		tb.Fatalf("parsing %.40s…: %v", line, err)
	}
	return k
}

// fzMintKeys returns index records of an auth-and-signing and a
// signing-only key (fields exported, so no store is needed).
func fzMintKeys(*testing.F) (auth, signing authindex.Key) {
	return authindex.Key{Usage: authindex.UsageAuth | authindex.UsageSigning}, authindex.Key{Usage: authindex.UsageSigning}
}

func newFzAuth(f *testing.F) *fzAuth {
	authRec, signRec := fzMintKeys(f)
	a := &fzAuth{
		users: map[int64]fzUser{
			1: {"alice", "alice@example.com", true, 10},
			2: {"bob", "bob@example.com", false, 10},
			3: {"carol", "carol@example.com", true, 0},
		},
		keys:    map[[32]byte]fzKey{},
		keyIDs:  map[int64]bool{},
		cas:     map[[32]byte]authindex.CA{},
		caIDs:   map[int64]bool{100: true, 101: true},
		members: map[[2]int64]int{{10, 1}: keystore.Developer, {10, 2}: keystore.Developer},
		groups:  map[int64]authindex.Group{10: {ID: 10, TopLevelID: 10}, 20: {ID: 20, TopLevelID: 20}},
		serials: map[[2]uint64]bool{{100, 7}: true},
		keyIDRv: map[int64]string{100: "revoked-id"},
	}
	add := func(line string, rec authindex.Key, canAuth bool, id, user, expMS int64) {
		rec.ID, rec.UserID, rec.ExpiresMS = id, user, expMS
		a.keys[fingerprint(fzParse(f, line))] = fzKey{k: rec, canAuth: canAuth}
		a.keyIDs[id] = true
	}
	add(fzAliceKey, authRec, true, 1000, 1, 0)
	add(fzAliceSigningKey, signRec, false, 1001, 1, 0)
	add(fzAliceExpiredKey, authRec, true, 1002, 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli())
	add(fzBobKey, authRec, true, 1003, 2, 0)
	a.cas[fingerprint(fzParse(f, fzCA))] = authindex.CA{ID: 100, GroupID: 10}
	a.cas[fingerprint(fzParse(f, fzCARSA))] = authindex.CA{ID: 101, GroupID: 10}
	return a
}

// fzSignedBytes is what a CA signs: the certificate without its signature
// (the same bytes x/crypto's unexported bytesForSigning returns).
func fzSignedBytes(c *gossh.Certificate) []byte {
	c2 := *c
	c2.Signature = nil
	out := c2.Marshal()
	return out[:len(out)-4]
}

// fzSourceOK is an independent reading of the source-address option.
func fzSourceOK(list string, ip net.IP) bool {
	for _, e := range strings.Split(list, ",") {
		e = strings.TrimSpace(e)
		if _, n, err := net.ParseCIDR(e); err == nil && n.Contains(ip) {
			return true
		}
		if a := net.ParseIP(e); a != nil && a.Equal(ip) {
			return true
		}
	}
	return false
}

func FuzzDecide(f *testing.F) {
	auth := newFzAuth(f)
	hostKey, err := gossh.NewSignerFromKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize)))
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Config{
		HostKeys: []gossh.Signer{hostKey}, Auth: auth, Projects: fzProjects{},
		Hostname: fzHostname, Now: func() time.Time { return fzNow },
	})
	if err != nil {
		f.Fatal(err)
	}

	// The seeds decide as expected, so that the invariants below are not
	// checked against a setup that refuses everything.
	for _, c := range fzCerts {
		cert, ok := fzParse(f, c.line).(*gossh.Certificate)
		if !ok {
			f.Fatalf("seed %s is not a certificate", c.name)
		}
		want, known := fzWantAccepted[c.name]
		if !known {
			f.Fatalf("seed %s has no expectation", c.name)
		}
		id, err := srv.decideCert("git", fzRemote, cert)
		if got := err == nil; got != want {
			f.Fatalf("seed cert %s: accepted=%v (err %v), want %v", c.name, got, err, want)
		}
		if err == nil && (id == nil || id.UserID != 1 || id.CAID == 0) {
			f.Fatalf("seed cert %s: identity %+v, want alice's certificate login", c.name, id)
		}
		f.Add(cert.Marshal(), "git")
		f.Add(cert.Marshal(), "alice")
	}
	for _, k := range []struct {
		line, login string
		want        bool
	}{
		{fzAliceKey, "git", true},
		{fzAliceKey, "alice", true},
		{fzAliceKey, "ALICE", true},
		{fzAliceKey, "bob", false},
		{fzAliceSigningKey, "git", false},
		{fzAliceExpiredKey, "git", false},
		{fzBobKey, "git", false},
		{fzStrangerKey, "git", false},
		{fzSubjectKey, "git", false},
		{fzCA, "git", false},
		{fzCARSA, "git", false},
	} {
		pub := fzParse(f, k.line)
		_, err := srv.decideKey(k.login, pub)
		if got := err == nil; got != k.want {
			f.Fatalf("seed key %.30s… as %q: accepted=%v (err %v), want %v", k.line, k.login, got, err, k.want)
		}
		f.Add(pub.Marshal(), k.login)
	}
	f.Add([]byte{}, "git")
	f.Add([]byte("\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20"), "git")

	f.Fuzz(func(t *testing.T, blob []byte, login string) {
		pub, err := gossh.ParsePublicKey(blob)
		if err != nil {
			return
		}
		offered := srv.offeredKey(nil, pub)

		id, err := srv.decideKey(login, pub)
		if err == nil {
			if id == nil {
				t.Fatal("decideKey: nil identity without error")
			}
			k, known := auth.keys[fingerprint(pub)]
			switch {
			case !known:
				t.Fatalf("decideKey accepted an unknown key %s", gossh.FingerprintSHA256(pub))
			case !k.canAuth:
				t.Fatalf("decideKey accepted a signing-only key")
			case k.k.ExpiresMS != 0 && fzNow.UnixMilli() >= k.k.ExpiresMS:
				t.Fatalf("decideKey accepted an expired key")
			case !auth.users[k.k.UserID].active:
				t.Fatalf("decideKey accepted a key of a blocked user")
			case login != "git" && !strings.EqualFold(login, auth.users[k.k.UserID].name):
				t.Fatalf("decideKey accepted login %q for user %s", login, auth.users[k.k.UserID].name)
			case id.UserID != k.k.UserID || id.KeyID != k.k.ID || id.Login != login || id.IsCertificate():
				t.Fatalf("decideKey identity %+v for key %+v login %q", id, k.k, login)
			case !offered:
				t.Fatalf("decideKey accepted a key that the query phase refuses")
			}
		} else if id != nil {
			t.Fatalf("decideKey: identity %+v with error %v", id, err)
		}

		cert, ok := pub.(*gossh.Certificate)
		if !ok {
			return
		}
		id, err = srv.decideCert(login, fzRemote, cert)
		if err != nil {
			if id != nil {
				t.Fatalf("decideCert: identity %+v with error %v", id, err)
			}
			return
		}
		if id == nil {
			t.Fatal("decideCert: nil identity without error")
		}
		if cert.CertType != gossh.UserCert {
			t.Fatalf("decideCert accepted cert type %d", cert.CertType)
		}
		if _, isCert := cert.SignatureKey.(*gossh.Certificate); isCert {
			t.Fatal("decideCert accepted a certificate signed by a certificate")
		}
		ca, known := auth.cas[fingerprint(cert.SignatureKey)]
		if !known {
			t.Fatalf("decideCert accepted a certificate of an unknown CA %s", gossh.FingerprintSHA256(cert.SignatureKey))
		}
		if !offered {
			t.Fatal("decideCert accepted a certificate that the query phase refuses")
		}
		if format := cert.Signature.Format; format == gossh.KeyAlgoRSA || format == gossh.KeyAlgoDSA {
			t.Fatalf("decideCert accepted a %s (SHA-1) CA signature", format)
		}
		if err := cert.SignatureKey.Verify(fzSignedBytes(cert), cert.Signature); err != nil {
			t.Fatalf("decideCert accepted a certificate whose CA signature does not verify: %v", err)
		}
		now := uint64(fzNow.Unix())
		if now < cert.ValidAfter || (cert.ValidBefore != gossh.CertTimeInfinity && now >= cert.ValidBefore) {
			t.Fatalf("decideCert accepted a certificate outside its window [%d, %d) at %d", cert.ValidAfter, cert.ValidBefore, now)
		}
		if auth.Revoked(ca.GroupID, fingerprint(cert.SignatureKey), cert.Serial, cert.KeyId, "", 0) {
			t.Fatal("decideCert accepted a revoked certificate")
		}
		who := cert.KeyId
		if v, ok := cert.Extensions["login@"+fzHostname]; ok {
			who = v
		}
		u, ok := auth.users[id.UserID]
		switch {
		case !ok:
			t.Fatalf("decideCert identity names unknown user %d", id.UserID)
		case !strings.EqualFold(who, u.name) && !strings.EqualFold(who, u.email):
			t.Fatalf("decideCert identity %q resolved to user %s", who, u.name)
		case !u.active:
			t.Fatalf("decideCert accepted blocked user %s", u.name)
		case auth.members[[2]int64{ca.GroupID, id.UserID}] == 0:
			t.Fatalf("decideCert accepted %s, not a member of group %d", u.name, ca.GroupID)
		case u.enterprise != ca.GroupID:
			t.Fatalf("decideCert accepted %s, not an enterprise user of group %d", u.name, ca.GroupID)
		case len(cert.ValidPrincipals) > 0 && !contains(cert.ValidPrincipals, login):
			t.Fatalf("decideCert accepted login %q outside principals %q", login, cert.ValidPrincipals)
		case login != "git" && !strings.EqualFold(login, u.name):
			t.Fatalf("decideCert accepted login %q for user %s", login, u.name)
		case id.Login != login || id.KeyID != 0 || id.CAID != ca.ID || id.CAGroupID != ca.GroupID ||
			id.CertSerial != cert.Serial || id.CertKeyID != cert.KeyId || id.KeyFingerprint != gossh.FingerprintSHA256(cert.Key):
			t.Fatalf("decideCert identity %+v for cert serial %d key id %q", id, cert.Serial, cert.KeyId)
		}
		for opt, val := range cert.CriticalOptions {
			if opt != "source-address" {
				t.Fatalf("decideCert accepted critical option %q", opt)
			}
			if !fzSourceOK(val, fzRemote.IP) {
				t.Fatalf("decideCert accepted source-address %q from %s", val, fzRemote.IP)
			}
		}
		// x/crypto's CertChecker is the reference for what it checks
		// (revocation aside, which is keygate's): keygate, checking those
		// itself for banners and skew, never accepts what it refuses. It
		// refuses principal-less certificates, which keygate accepts.
		if len(cert.ValidPrincipals) > 0 {
			checker := gossh.CertChecker{Clock: func() time.Time { return fzNow }, SupportedCriticalOptions: []string{"source-address"}}
			if err := checker.CheckCert(login, cert); err != nil {
				t.Fatalf("decideCert accepted a certificate x/crypto's CertChecker refuses: %v", err)
			}
		}
	})
}
