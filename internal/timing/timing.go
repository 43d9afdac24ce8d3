// Package timing measures how long operations take in tests and benchmarks: samples of
// durations, their median and other percentiles, and durations rounded for logs. It asserts
// nothing about speed; what a test does with the figures is its own.
package timing

import (
	"slices"
	"testing"
	"time"
)

// Resolution is what Round rounds to: finer digits are noise under the VM's emulation.
const Resolution = 10 * time.Microsecond

// Round rounds d to Resolution, for logs.
func Round(d time.Duration) time.Duration { return d.Round(Resolution) }

// Since is the time since start, rounded to Resolution.
func Since(start time.Time) time.Duration { return Round(time.Since(start)) }

// Samples are measured durations, in the order they were taken.
type Samples []time.Duration

// Time runs op and adds how long it took; an error fails the test.
func (s *Samples) Time(t testing.TB, op func() error) {
	t.Helper()
	start := time.Now()
	if err := op(); err != nil {
		t.Fatal(err)
	}
	*s = append(*s, time.Since(start))
}

// Repeat runs op(0) to op(n-1) one after the other and returns how long each took; an error
// fails the test, naming what and i.
func Repeat(t testing.TB, what string, n int, op func(i int) error) Samples {
	t.Helper()
	s := make(Samples, n)
	for i := range n {
		start := time.Now()
		if err := op(i); err != nil {
			t.Fatalf("%s %d: %v", what, i, err)
		}
		s[i] = time.Since(start)
	}
	return s
}

// Percentile is the sample below which p percent (0 to 99) of the samples fall: the one at
// index len*p/100 in sorted order, not interpolated. s must not be empty.
func (s Samples) Percentile(p int) time.Duration {
	sorted := slices.Clone(s)
	slices.Sort(sorted)
	return sorted[len(sorted)*p/100]
}

// P50 is the median, Percentile(50).
func (s Samples) P50() time.Duration { return s.Percentile(50) }
