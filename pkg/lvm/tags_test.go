package lvm

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestEncodeTag(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{"nvmeof.csi.io/uuid", "6f1c2a4e-0d2b-4d5e-9a51-3f0e8c7b1d22", "nvmeof.csi.io/uuid=6f1c2a4e-0d2b-4d5e-9a51-3f0e8c7b1d22"},
		{"nvmeof.csi.io/host", "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba", "nvmeof.csi.io/host=nqn.2014-08.org.nvmexpress:uuid:1b4e28ba"},
		{"k", "", "k="},
		{"", "", "="},
		{"k", "a b", "k=a#20b"},
		{"k", "a=b#c", "k=a#3Db#23c"},
		{"a=b", "v", "a#3Db=v"},
		{"k", "x,y", "k=x#2Cy"},
		{"k", "!&", "k=#21#26"},
		{"-k", "-v", "#2Dk=-v"},
		{"k-", "v", "k-=v"},
		{"k", "é", "k=#C3#A9"},
		{"k", "\x00\xff", "k=#00#FF"},
	}
	for _, tt := range tests {
		got := EncodeTag(tt.key, tt.value)
		if got != tt.want {
			t.Errorf("EncodeTag(%q, %q) = %q, want %q", tt.key, tt.value, got, tt.want)
		}
		if err := ValidateTag(got); err != nil {
			t.Errorf("EncodeTag(%q, %q) = %q is not a valid LVM tag: %v", tt.key, tt.value, got, err)
		}
		k, v, err := ParseTag(got)
		if err != nil || k != tt.key || v != tt.value {
			t.Errorf("ParseTag(%q) = %q, %q, %v; want %q, %q", got, k, v, err, tt.key, tt.value)
		}
	}
}

func TestParseTagRejectsWhatEncodeTagCannotMake(t *testing.T) {
	for _, tag := range []string{
		"plain",       // no '='
		"k=a#2",       // truncated escape
		"k=a#",        // truncated escape
		"k=#zz",       // not hex
		"k=#2a",       // lower-case hex
		"k=#41",       // 'A' needs no escape
		"#2Ek=v",      // '.' needs no escape
		"-k=v",        // a leading '-' is always escaped
		"k=a!b",       // '!' is always escaped
		"k=a&b",       // '&' is always escaped
		"k=v=w",       // a second '=' is always escaped
		"k=a b",       // not even an LVM tag
		"a#3D=b=c#3D", // second '=' literal
	} {
		if k, v, err := ParseTag(tag); !errors.Is(err, ErrInvalidTag) {
			t.Errorf("ParseTag(%q) = %q, %q, %v; want ErrInvalidTag", tag, k, v, err)
		}
	}
}

func TestTagValues(t *testing.T) {
	tags := []string{
		EncodeTag("uuid", "u-1"),
		"foreign-tag",
		EncodeTag("host", "nqn.a"),
		"k=#zz",
		EncodeTag("host", "nqn b"),
	}
	if v, ok := TagValue(tags, "uuid"); !ok || v != "u-1" {
		t.Errorf("TagValue(uuid) = %q, %v", v, ok)
	}
	if v, ok := TagValue(tags, "host"); !ok || v != "nqn.a" {
		t.Errorf("TagValue(host) = %q, %v", v, ok)
	}
	if _, ok := TagValue(tags, "missing"); ok {
		t.Error("TagValue(missing) found something")
	}
	if got := TagValues(tags, "host"); !slices.Equal(got, []string{"nqn.a", "nqn b"}) {
		t.Errorf("TagValues(host) = %q", got)
	}
	if got := TagValues(nil, "host"); got != nil {
		t.Errorf("TagValues(nil) = %q", got)
	}
}

func TestValidateTag(t *testing.T) {
	tests := []struct {
		tag string
		ok  bool
	}{
		{"a=b", true},
		{"A-Za-z0-9_+.-/=!:&#", true},
		{strings.Repeat("t", MaxTagLen), true},
		{strings.Repeat("t", MaxTagLen+1), false},
		{"", false},
		{"-x", false},
		{"a,b", false},
		{"a b", false},
		{"@a", false},
		{"a%b", false},
	}
	for _, tt := range tests {
		err := ValidateTag(tt.tag)
		if (err == nil) != tt.ok {
			t.Errorf("ValidateTag(%q) = %v, want ok=%v", tt.tag, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTag) {
			t.Errorf("ValidateTag(%q) = %v, not ErrInvalidTag", tt.tag, err)
		}
	}
}

// FuzzTagRoundTrip: every key and value survives EncodeTag and ParseTag, and the tag is one
// LVM accepts.
func FuzzTagRoundTrip(f *testing.F) {
	f.Add("nvmeof.csi.io/uuid", "6f1c2a4e-0d2b-4d5e-9a51-3f0e8c7b1d22")
	f.Add("-", "=#,")
	f.Add("", "")
	f.Add("k\x00", "\xff\xfe é")
	f.Fuzz(func(t *testing.T, key, value string) {
		tag := EncodeTag(key, value)
		if len(tag) <= MaxTagLen {
			if err := ValidateTag(tag); err != nil {
				t.Fatalf("EncodeTag(%q, %q) = %q: %v", key, value, tag, err)
			}
		}
		k, v, err := ParseTag(tag)
		if err != nil || k != key || v != value {
			t.Fatalf("ParseTag(EncodeTag(%q, %q)) = %q, %q, %v", key, value, k, v, err)
		}
	})
}

// FuzzParseTag: whatever ParseTag accepts, EncodeTag gives back byte for byte (one encoding
// per key and value).
func FuzzParseTag(f *testing.F) {
	f.Add("k=v")
	f.Add("#2Dk=a#3Db")
	f.Add("k=#41")
	f.Add("=")
	f.Fuzz(func(t *testing.T, tag string) {
		k, v, err := ParseTag(tag)
		if err != nil {
			return
		}
		if again := EncodeTag(k, v); again != tag {
			t.Fatalf("ParseTag(%q) = %q, %q; EncodeTag gives %q", tag, k, v, again)
		}
	})
}
