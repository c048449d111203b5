package keystore

import (
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Fingerprint kinds NormalizeFingerprint reports.
const (
	FingerprintSHA256 = "sha256"
	FingerprintMD5    = "md5"
)

// NormalizeFingerprint reads a key fingerprint in any form a person pastes
// and returns it as keygate stores it ("SHA256:" and unpadded base64, or
// MD5 as lower-case colon-separated hex) with its kind:
//
//   - "SHA256:…" as ssh-keygen -l prints it, the prefix in any letter case
//     or left out, with or without "=" padding;
//   - with every "+" turned into a space, which is what a form body or a
//     query string makes of `-d fingerprint=SHA256:ab+cd…` (base64 has no
//     spaces, so a space inside the 43 characters can only be a "+");
//   - a whole `ssh-keygen -l` line: "256 SHA256:… comment (ED25519)";
//   - MD5 as "aa:bb:…" (16 pairs, any case) with or without "MD5:", or as
//     32 hex digits, as GitLab's GET /keys?fingerprint= takes it.
//
// A SHA-256 fingerprint must decode to 32 bytes; anything else is not ok.
func NormalizeFingerprint(fp string) (kind, value string, ok bool) {
	s := strings.TrimSpace(fp)
	lower := asciiLower(s) // byte for byte: indexes in lower are indexes in s
	if i := strings.Index(lower, "sha256:"); i >= 0 {
		if !tokenStart(s, i) {
			return "", "", false
		}
		return sha256Body(s[i+len("sha256:"):], true)
	}
	if i := strings.Index(lower, "md5:"); i >= 0 {
		if !tokenStart(s, i) {
			return "", "", false
		}
		rest := s[i+len("md5:"):]
		if end := strings.IndexAny(rest, " \t"); end >= 0 {
			rest = rest[:end]
		}
		return md5Body(rest)
	}
	if k, v, ok := md5Body(s); ok {
		return k, v, ok
	}
	return sha256Body(s, false)
}

// tokenStart reports whether s[i:] starts a word (a prefix of a line such
// as ssh-keygen's "256 SHA256:…" is fine, "xSHA256:…" is not).
func tokenStart(s string, i int) bool {
	return i == 0 || s[i-1] == ' ' || s[i-1] == '\t'
}

// sha256Body reads the 43 base64 characters of a SHA-256 fingerprint from
// the start of s, a space counting as "+", then optional "=" padding. In a
// line, what follows must be a space; otherwise nothing may follow.
func sha256Body(s string, inLine bool) (kind, value string, ok bool) {
	const n = 43 // base64 of 32 bytes, unpadded
	var b strings.Builder
	i := 0
	for ; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		switch {
		case c == ' ':
			b.WriteByte('+')
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			b.WriteByte(c)
		default:
			return "", "", false
		}
	}
	for i < len(s) && s[i] == '=' {
		i++
	}
	if rest := s[i:]; rest != "" && (!inLine || (rest[0] != ' ' && rest[0] != '\t')) {
		return "", "", false
	}
	raw, err := base64.RawStdEncoding.Strict().DecodeString(b.String())
	if err != nil || len(raw) != 32 {
		return "", "", false
	}
	return FingerprintSHA256, "SHA256:" + b.String(), true
}

// md5Body reads an MD5 fingerprint: 16 colon-separated hex pairs or 32 hex
// digits, in any case.
func md5Body(s string) (kind, value string, ok bool) {
	h := s
	if len(s) == 47 && strings.Count(s, ":") == 15 {
		for i := 2; i < len(s); i += 3 {
			if s[i] != ':' {
				return "", "", false
			}
		}
		h = strings.ReplaceAll(s, ":", "")
	}
	raw, err := hex.DecodeString(h)
	if err != nil || len(raw) != 16 {
		return "", "", false
	}
	pairs := make([]string, 16)
	for i, c := range raw {
		pairs[i] = hex.EncodeToString([]byte{c})
	}
	return FingerprintMD5, strings.Join(pairs, ":"), true
}
