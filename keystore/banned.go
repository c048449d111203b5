package keystore

// bannedFingerprints are SHA-256 fingerprints of public keys whose private
// halves are public knowledge (vendor backdoor keys collected by rapid7's
// ssh-badkeys and similar). GitLab refuses the same list.
var bannedFingerprints = map[string]bool{
	// RSA
	"SHA256:Z+q4XhSwWY7q0BIDVPR1v/S306FjGBsid7tLq/8kIxM": true,
	"SHA256:uy5wXyEgbRCGsk23+J6f85om7G55Cu3UIPwC7oMZhNQ": true,
	"SHA256:9prMbqhS4QteoFQ1ZRJDqSBLWoHXPyKB0iWR05Ghro4": true,
	"SHA256:1M4RzhMyWuFS/86uPY/ce2prh/dVTHW7iD2RhpquOZA": true,
	"SHA256:2ewGtK7Dc8XpnfNKShczdc8HSgoEGpoX+MiJkfH2p5I": true,
	// DSA (refused anyway by type; listed for completeness)
	"SHA256:/JLp6z6uGE3BPcs70RQob6QOdEWQ6nDC0xY7ejPOCc0": true,
	"SHA256:whDP3xjKBEettbDuecxtGsfWBST+78gb6McdB9P7jCU": true,
	"SHA256:MEc4HfsOlMqJ3/9QMTmrKn5Xj/yfnMITMW8EwfUfTww": true,
	"SHA256:aPoYT2nPIfhqv6BIlbCCpbDjirBxaDFOtPfZ2K20uWw": true,
	"SHA256:VtjqZ5fiaeoZ3mXOYi49Lk9aO31iT4pahKFP9JPiQPc": true,
}

func isBanned(fp string) bool { return bannedFingerprints[fp] }
