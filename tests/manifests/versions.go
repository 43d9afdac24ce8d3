package manifests

import (
	"fmt"
	"regexp"
	"strings"
)

// VersionsFile is the repository's one list of pinned versions, relative to its root: bash
// sources it (hack/*.sh) and make includes it (Makefile).
const VersionsFile = "versions.env"

// Pin is one entry of the versions file.
type Pin struct {
	Key   string
	Value string
	Line  int
}

// A line both `source` (bash) and `include` (make) read as the same assignment: no quotes,
// spaces, $ or comment after the value, and a value that is one word in both.
var pinLine = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=([A-Za-z0-9][A-Za-z0-9.+_,-]*)$`)

// ParseVersions parses a versions file (name is for errors): comment lines, blank lines and
// KEY=value lines, each with a comment line right above it, no key twice.
func ParseVersions(name string, data []byte) ([]Pin, error) {
	var pins []Pin
	first := map[string]int{}
	commented := false
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		switch {
		case strings.HasPrefix(line, "#"):
			commented = true
			continue
		case line == "":
			commented = false
			continue
		}
		m := pinLine.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s:%d: %q is not KEY=value: an upper-case KEY, then a value of letters, digits and . + _ , - only, with no quotes, spaces, $ or comment after it, so that bash's source and make's include read it alike", name, n, line)
		}
		if !commented {
			return nil, fmt.Errorf("%s:%d: %s has no comment line right above it: say what it pins and who reads it", name, n, m[1])
		}
		if prev, dup := first[m[1]]; dup {
			return nil, fmt.Errorf("%s:%d: %s is already set on line %d: keep one", name, n, m[1], prev)
		}
		first[m[1]] = n
		pins = append(pins, Pin{Key: m[1], Value: m[2], Line: n})
		commented = false
	}
	if len(pins) == 0 {
		return nil, fmt.Errorf("%s: no KEY=value entries", name)
	}
	return pins, nil
}
