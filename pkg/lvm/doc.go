// Package lvm manages one LVM thin pool: its thin volumes, thin snapshots and clones, tags
// and capacity.
//
// Everything goes through the lvm command (a command.Runner, so every call is bounded by the
// caller's context and runs with LC_ALL=C). Reports are read as json (--reportformat json,
// sizes with --units b --nosuffix), never as human output. Whether an LV exists is decided by
// asking lvs, not by reading error messages; the few failures that can only be told apart by
// their message (no space, in use, shrink) are classified in one place, errors.go.
//
// Names: LV names must pass ValidateName and, together with the VG's name, fit the longer
// names LVM derives from them; Pool methods check this before running lvm (ErrInvalidName).
// Get, List, Usage, Remove and Extend only see thin LVs of the pool: the pool itself and
// other LVs of the VG are ErrNotFound to them (ListVG, for checks, lists every LV of the VG).
// AddTags, DelTags, Activate and Deactivate act on <vg>/<name> directly (one lvm call, no
// lookup first) and refuse only the pool itself, so callers pass them names they got from
// this Pool.
//
// Idempotency: Create and Snapshot of an existing name return ErrExists with the existing LV
// (for the caller to compare); Remove of a missing LV returns ErrNotFound (success for a
// delete); Extend, AddTags, DelTags, Activate and Deactivate can simply be repeated.
//
// Durable state belongs in tags (EncodeTag, ParseTag): they live in the VG metadata on the
// storage node's disks and survive reboots.
//
// Concurrency: a Pool holds no mutable state and may be used from many goroutines. Callers
// serialize operations on the same LV name; operations on different LVs may run in
// parallel (lvm itself serializes metadata changes with a per-VG lock).
package lvm
