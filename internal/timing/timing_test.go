package timing

import (
	"errors"
	"testing"
	"time"
)

func ms(n ...int) Samples {
	s := make(Samples, len(n))
	for i, v := range n {
		s[i] = time.Duration(v) * time.Millisecond
	}
	return s
}

func TestPercentileIsTheSampleAtItsRank(t *testing.T) {
	for _, tc := range []struct {
		s        Samples
		p        int
		want     time.Duration
		describe string
	}{
		{ms(7), 50, 7 * time.Millisecond, "one sample"},
		{ms(3, 1, 2), 50, 2 * time.Millisecond, "odd count, unsorted"},
		{ms(4, 1, 3, 2), 50, 3 * time.Millisecond, "even count: the upper middle, not interpolated"},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 10 * time.Millisecond, "p90 of ten"},
		{ms(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 0, time.Millisecond, "p0 is the least"},
	} {
		if got := tc.s.Percentile(tc.p); got != tc.want {
			t.Errorf("%s: Percentile(%d) of %v = %s, want %s", tc.describe, tc.p, tc.s, got, tc.want)
		}
	}
	s := ms(3, 1, 2)
	if s.P50() != 2*time.Millisecond || s[0] != 3*time.Millisecond {
		t.Errorf("P50 of %v = %s, or it reordered the samples", s, s.P50())
	}
}

func TestRepeatAndTimeCollectSamples(t *testing.T) {
	var calls []int
	s := Repeat(t, "op", 5, func(i int) error {
		calls = append(calls, i)
		time.Sleep(time.Millisecond)
		return nil
	})
	if len(s) != 5 || len(calls) != 5 || calls[4] != 4 {
		t.Fatalf("Repeat of 5: %d samples, calls %v", len(s), calls)
	}
	for _, d := range s {
		if d < time.Millisecond {
			t.Errorf("sample %s is shorter than the operation", d)
		}
	}
	var tm Samples
	tm.Time(t, func() error { return nil })
	tm.Time(t, func() error { time.Sleep(time.Millisecond); return nil })
	if len(tm) != 2 || tm[1] < time.Millisecond {
		t.Errorf("Time twice: %v", tm)
	}
}

// fatal records Fatal and Fatalf instead of ending the test.
type fatal struct {
	testing.TB
	msg string
}

func (f *fatal) Fatal(args ...any)                 { f.msg = "fatal" }
func (f *fatal) Fatalf(format string, args ...any) { f.msg = format }

func TestAnErrorFailsTheTest(t *testing.T) {
	f := &fatal{TB: t}
	Repeat(f, "op", 1, func(int) error { return errors.New("broken") })
	if f.msg == "" {
		t.Error("Repeat of a failing op did not fail the test")
	}
	f.msg = ""
	var s Samples
	s.Time(f, func() error { return errors.New("broken") })
	if f.msg == "" {
		t.Error("Time of a failing op did not fail the test")
	}
}

func TestRoundAndSince(t *testing.T) {
	if got := Round(1234567 * time.Nanosecond); got != 1230*time.Microsecond {
		t.Errorf("Round(1.234567ms) = %s", got)
	}
	if d := Since(time.Now().Add(-time.Second)); d < time.Second || d%Resolution != 0 {
		t.Errorf("Since a second ago = %s", d)
	}
}
