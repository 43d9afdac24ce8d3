package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// byteSize is a flag value in bytes, written with a binary suffix: 8Gi, 256Mi, 512Ki, or plain
// bytes.
type byteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"Ti", 40}, {"Gi", 30}, {"Mi", 20}, {"Ki", 10}}

func (b *byteSize) Set(s string) error {
	num, shift := s, uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = n, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)>>shift {
		return fmt.Errorf("%q: want a positive size such as 8Gi, 256Mi or 1048576", s)
	}
	*b = byteSize(n << shift)
	return nil
}

func (b byteSize) String() string { return human(int64(b)) }

// human writes a byte count with the largest binary unit that divides it exactly, or with one
// decimal in the largest unit below it.
func human(n int64) string {
	for _, u := range byteUnits {
		unit := int64(1) << u.shift
		if n >= unit {
			if n%unit == 0 {
				return fmt.Sprintf("%d %siB", n/unit, u.suffix[:1])
			}
			return fmt.Sprintf("%.1f %siB", float64(n)/float64(unit), u.suffix[:1])
		}
	}
	return fmt.Sprintf("%d B", n)
}

// secs writes a duration as seconds with two decimals under a minute, else as 2m05s.
func secs(d time.Duration) string {
	if d < time.Minute {
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
	d = d.Round(time.Second)
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}

// rate writes bytes per second in MiB/s.
func rate(n int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MiB/s", float64(n)/(1<<20)/d.Seconds())
}
