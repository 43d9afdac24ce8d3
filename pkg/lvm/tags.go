package lvm

import (
	"fmt"
	"strings"
)

// MaxTagLen bounds the tags this package writes. LVM itself accepts longer ones, but tags live
// in the VG metadata, which every lvm command reads: anything bigger belongs in a state file.
const MaxTagLen = 1024

// tagEscape introduces an escaped byte in an encoded tag: '#' and two upper-case hex digits.
const tagEscape = '#'

// EncodeTag turns an arbitrary key and value into one LVM tag, "<key>=<value>", so durable
// state (a volume UUID, a content source, a host NQN) can be stored on an LV.
//
// Key and value keep the bytes that are common in identifiers and read well in `lvs -o tags`
// (a-z A-Z 0-9 _ + . - / :); every other byte, '=' and '#' included, becomes '#' and two
// upper-case hex digits, as does a '-' that would start the tag. The encoding is canonical:
// ParseTag inverts it, and accepts nothing EncodeTag cannot produce. The result may still be
// longer than MaxTagLen; AddTags and Create refuse such tags with ErrInvalidTag.
func EncodeTag(key, value string) string {
	var b strings.Builder
	b.Grow(len(key) + 1 + len(value))
	escapeTagPart(&b, key, true)
	b.WriteByte('=')
	escapeTagPart(&b, value, false)
	return b.String()
}

// ParseTag splits a tag made by EncodeTag into its key and value. A tag EncodeTag cannot have
// made (no '=', a bad or needless escape) is an error wrapping ErrInvalidTag, so callers can
// skip tags that are not theirs.
func ParseTag(tag string) (key, value string, err error) {
	rawKey, rawValue, ok := strings.Cut(tag, "=")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no '='", ErrInvalidTag, tag)
	}
	if key, err = unescapeTagPart(rawKey, true); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrInvalidTag, tag, err)
	}
	if value, err = unescapeTagPart(rawValue, false); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrInvalidTag, tag, err)
	}
	return key, value, nil
}

// TagValue returns the value of the first tag with key, if any. Tags that ParseTag rejects
// are skipped.
func TagValue(tags []string, key string) (string, bool) {
	for _, t := range tags {
		if k, v, err := ParseTag(t); err == nil && k == key {
			return v, true
		}
	}
	return "", false
}

// TagValues returns the values of all tags with key, in order: for keys that hold a set, such
// as the hosts a volume is published to.
func TagValues(tags []string, key string) []string {
	var out []string
	for _, t := range tags {
		if k, v, err := ParseTag(t); err == nil && k == key {
			out = append(out, v)
		}
	}
	return out
}

// ValidateTag checks a tag against LVM's rules: 1 to MaxTagLen characters from
// [A-Za-z0-9_+.-/=!:&#], not starting with '-' (which the lvm command line would misread).
// The error wraps ErrInvalidTag.
func ValidateTag(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("%w: empty tag", ErrInvalidTag)
	case len(tag) > MaxTagLen:
		return fmt.Errorf("%w: %d characters, more than %d", ErrInvalidTag, len(tag), MaxTagLen)
	case tag[0] == '-':
		return fmt.Errorf("%w: %q starts with '-'", ErrInvalidTag, tag)
	}
	for i := 0; i < len(tag); i++ {
		if c := tag[i]; !isAlnum(c) && !strings.ContainsRune("_+.-/=!:&#", rune(c)) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidTag, tag, c)
		}
	}
	return nil
}

// isTagLiteral reports whether EncodeTag keeps c as it is.
func isTagLiteral(c byte) bool {
	return isAlnum(c) || c == '_' || c == '+' || c == '.' || c == '-' || c == '/' || c == ':'
}

const hexDigits = "0123456789ABCDEF"

func escapeTagPart(b *strings.Builder, s string, leading bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isTagLiteral(c) && (!leading || i != 0 || c != '-') {
			b.WriteByte(c)
			continue
		}
		b.WriteByte(tagEscape)
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xF])
	}
}

func unescapeTagPart(s string, leading bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != tagEscape {
			if !isTagLiteral(c) || leading && i == 0 && c == '-' {
				return "", fmt.Errorf("unescaped %q", c)
			}
			b.WriteByte(c)
			continue
		}
		if i+3 > len(s) {
			return "", fmt.Errorf("truncated escape at %d", i)
		}
		hi, lo := strings.IndexByte(hexDigits, s[i+1]), strings.IndexByte(hexDigits, s[i+2])
		if hi < 0 || lo < 0 {
			return "", fmt.Errorf("bad escape %q", s[i:i+3])
		}
		d := byte(hi<<4 | lo)
		if isTagLiteral(d) && (!leading || i != 0 || d != '-') {
			return "", fmt.Errorf("needless escape %q", s[i:i+3])
		}
		b.WriteByte(d)
		i += 2
	}
	return b.String(), nil
}
