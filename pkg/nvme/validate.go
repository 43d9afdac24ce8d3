package nvme

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxNQNLen is NVMF_NQN_SIZE, the longest NQN the kernel and the specification accept.
const maxNQNLen = 223

var (
	uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// dhchapRE is the DH-HMAC-CHAP secret representation (NVMe base spec 8.13.5.8):
	// "DHHC-1:<hash id>:<base64 of key and CRC-32>:".
	dhchapRE = regexp.MustCompile(`^DHHC-1:0[0-3]:[A-Za-z0-9+/]+={0,2}:$`)
)

// ValidNQN reports whether s is an acceptable NVMe Qualified Name: "nqn." prefix, at most 223
// bytes, valid UTF-8, and free of whitespace, control characters, ',' and '=' (which would
// split or inject options in a /dev/nvme-fabrics option string). The error wraps
// ErrInvalidOption.
func ValidNQN(s string) error {
	switch {
	case !strings.HasPrefix(s, "nqn.") || len(s) <= len("nqn."):
		return fmt.Errorf("%w: NQN %q does not start with \"nqn.\"", ErrInvalidOption, s)
	case len(s) > maxNQNLen:
		return fmt.Errorf("%w: NQN is %d bytes, more than %d", ErrInvalidOption, len(s), maxNQNLen)
	}
	return plainValue("NQN", s)
}

// ValidUUID reports whether s is a UUID in its 36-character textual form. The error wraps
// ErrInvalidOption.
func ValidUUID(s string) error {
	if !uuidRE.MatchString(s) {
		return fmt.Errorf("%w: %q is not a UUID", ErrInvalidOption, s)
	}
	return nil
}

// plainValue rejects what could break out of one "key=value" field of an option string.
func plainValue(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s", ErrInvalidOption, what)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidOption, what)
	}
	for _, r := range s {
		if r == ',' || r == '=' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("%w: %s %q contains %q", ErrInvalidOption, what, s, r)
		}
	}
	return nil
}

// validSecret checks a DH-HMAC-CHAP secret without echoing it. Base64 padding makes '=' legal
// here; the kernel splits options on ',' and newline only and takes everything after the
// first '=' of a field as its value.
func validSecret(what, s string) error {
	if !dhchapRE.MatchString(s) {
		return fmt.Errorf("%w: %s is not a DH-HMAC-CHAP secret (want the form \"DHHC-1:0N:<base64>:\")", ErrInvalidOption, what)
	}
	return nil
}
