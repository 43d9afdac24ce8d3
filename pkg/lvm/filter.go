package lvm

import (
	"regexp"
	"strings"
)

// DeviceFilter returns lvm.conf text, for Pool.ExtraConfig or any lvm command's --config,
// that lets LVM scan exactly the given device paths and nothing else:
//
//	devices { global_filter = [ "a|^/dev/loop0$|", "r|.*|" ] }
//
// Each path is matched whole and literally (its regular expression metacharacters escaped),
// so /dev/loop1 does not also admit /dev/loop10. Without devices it returns "": no filter.
// The result may be followed by further lvm.conf text, including another devices section
// (LVM merges sections of the same name).
func DeviceFilter(devices ...string) string {
	if len(devices) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("devices { global_filter = [ ")
	for _, d := range devices {
		b.WriteString(configString("a|^" + regexp.QuoteMeta(d) + "$|"))
		b.WriteString(", ")
	}
	b.WriteString(`"r|.*|" ] }`)
	return b.String()
}

// configString quotes s as an lvm.conf string value: within double quotes, LVM reads \\ as
// a backslash and \" as a double quote.
func configString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
