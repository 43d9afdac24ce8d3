package nvmet

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// MaxNQNLength is the longest NQN the NVMe base specification allows, in bytes.
const MaxNQNLength = 223

// discoveryNQN is the well-known discovery subsystem; configfs refuses to create it.
const discoveryNQN = "nqn.2014-08.org.nvmexpress.discovery"

// ValidateNQN checks that s is an NVMe qualified name as the NVMe base specification defines
// it: "nqn.", a yyyy-mm date, ".", then a naming-authority-specific part, at most 223 bytes of
// UTF-8. Since an NQN is also a configfs directory name, "/" and control characters are
// refused too. The error wraps ErrInvalidNQN.
func ValidateNQN(s string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidNQN, s, why) }
	switch {
	case len(s) > MaxNQNLength:
		return bad(fmt.Sprintf("longer than %d bytes", MaxNQNLength))
	case !strings.HasPrefix(s, "nqn."):
		return bad(`does not start with "nqn."`)
	case !utf8.ValidString(s):
		return bad("not UTF-8")
	case s == discoveryNQN:
		return bad("the discovery subsystem NQN is reserved")
	}
	// "nqn." yyyy "-" mm "." then at least one more character.
	date := s[len("nqn."):]
	if len(date) < len("yyyy-mm.x") || !digits(date[0:4]) || date[4] != '-' || !digits(date[5:7]) || date[7] != '.' {
		return bad(`want "nqn.yyyy-mm.<reverse domain>..."`)
	}
	for _, r := range s {
		if r == '/' || r < 0x20 || r == 0x7f || r == ' ' {
			return bad(fmt.Sprintf("contains %q", r))
		}
	}
	return nil
}

func digits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// parseUUID returns a UUID in the canonical form configfs shows (8-4-4-4-12, lower case). With
// dashesOptional it also accepts 32 hex digits, as device_nguid does.
func parseUUID(s string, dashesOptional bool) (string, error) {
	raw := strings.ToLower(s)
	if dashesOptional && len(raw) == 32 {
		raw = raw[0:8] + "-" + raw[8:12] + "-" + raw[12:16] + "-" + raw[16:20] + "-" + raw[20:32]
	}
	if len(raw) != 36 || raw[8] != '-' || raw[13] != '-' || raw[18] != '-' || raw[23] != '-' {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s)
	}
	if _, err := hex.DecodeString(strings.ReplaceAll(raw, "-", "")); err != nil {
		return "", fmt.Errorf("%w: %q is not a UUID", ErrInvalid, s)
	}
	return raw, nil
}

// printable reports whether s is non-empty printable ASCII of at most max bytes, which is what
// the kernel accepts for attr_serial and attr_model.
func printable(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, c := range []byte(s) {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// dhchapKeyRE is the transport form of a DH-HMAC-CHAP secret (NVMe Base Specification
// 8.13.5.8, as nvme-cli's gen-dhchap-key prints it): "DHHC-1:<hash 00-03>:<base64 of the key
// and its CRC-32>:".
var dhchapKeyRE = regexp.MustCompile(`^DHHC-1:0[0-3]:[A-Za-z0-9+/]+={0,2}:$`)

// ValidateDHCHAPKey checks that s has the form of a DH-HMAC-CHAP secret. The error never
// contains s.
func ValidateDHCHAPKey(s string) error {
	if len(s) > 256 || !dhchapKeyRE.MatchString(s) {
		return fmt.Errorf("%w: not a DH-HMAC-CHAP secret (want DHHC-1:0N:<base64>:, as nvme gen-dhchap-key prints)", ErrInvalid)
	}
	return nil
}
