package dm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Where Open finds the control device, and where the kernel says which dev_t it has.
const (
	ControlPath   = "/dev/mapper/control"
	controlSysDev = "/sys/class/misc/device-mapper/dev"
)

// Buffer sizes: replies of variable size start at minReply bytes of payload and double while
// the kernel says the buffer is full, up to maxBuffer bytes in all.
const (
	minReply  = 16 << 10
	maxBuffer = 16 << 20
)

// Ioctl names, for errors.
const (
	opVersion      = "DM_VERSION"
	opListDevices  = "DM_LIST_DEVICES"
	opCreate       = "DM_DEV_CREATE"
	opRemove       = "DM_DEV_REMOVE"
	opSuspend      = "DM_DEV_SUSPEND"
	opStatus       = "DM_DEV_STATUS"
	opTableLoad    = "DM_TABLE_LOAD"
	opTableClear   = "DM_TABLE_CLEAR"
	opTableStatus  = "DM_TABLE_STATUS"
	opListVersions = "DM_LIST_VERSIONS"
	opTargetMsg    = "DM_TARGET_MSG"
)

// Control is an open /dev/mapper/control. Its methods may be called from many goroutines.
type Control struct {
	f    *os.File
	conn syscall.RawConn
	// listHint is the payload size the last List needed, to start the next one there.
	listHint atomic.Int64
}

// Version is a version of the ioctl interface or of a target type.
type Version struct{ Major, Minor, Patch uint32 }

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v is o or newer.
func (v Version) AtLeast(o Version) bool {
	if v.Major != o.Major {
		return v.Major > o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor > o.Minor
	}
	return v.Patch >= o.Patch
}

// Target is one line of a table: Length sectors (of 512 bytes) from sector Start, mapped by
// target Type ("linear", "thin-pool", ...) with Params. Tables cover sectors 0 to the device's
// size without gaps. In a reply of Status, Params is the target's status line instead.
type Target struct {
	Start, Length uint64
	Type          string
	Params        string
}

// DeviceInfo is what the kernel reports about a device (DM_DEV_STATUS and the replies of
// Create, Resume and Load).
type DeviceInfo struct {
	Name, UUID string
	// Dev is the device's dev_t (unix.Mkdev encoding); Major and Minor are its parts.
	Dev          uint64
	Major, Minor uint32
	// Suspended: new I/O is held until Resume.
	Suspended bool
	// LiveTable and InactiveTable say which table slots are filled.
	LiveTable, InactiveTable bool
	// ReadOnly: the live table was loaded read-only.
	ReadOnly bool
	// OpenCount is how many openers hold the block device (other dm devices stacked on it
	// included).
	OpenCount int32
	// EventNr counts the device's events (table swaps, target events such as a thin pool
	// crossing its low water mark).
	EventNr uint32
	// TargetCount is the number of targets in the live table.
	TargetCount uint32
}

// Device is one entry of List.
type Device struct {
	Name, UUID string
	Dev        uint64
	EventNr    uint32
}

// FormatDev writes a dev_t as "major:minor", the form tables use to name a device without a
// node (and the form Table returns).
func FormatDev(dev uint64) string {
	return fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
}

// Open opens /dev/mapper/control. If the node is missing (or is not the device-mapper's),
// Open makes it from /sys/class/misc/device-mapper/dev. It loads no module: without
// device-mapper in the kernel (dm_mod), it fails.
func Open() (*Control, error) {
	if err := ensureControlNode(ControlPath, controlSysDev); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(ControlPath, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("dm: %w", err)
	}
	conn, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("dm: %w", err)
	}
	return &Control{f: f, conn: conn}, nil
}

// ensureControlNode makes the control node at path if it is missing or has another dev_t than
// the one the kernel gives in sysDev.
func ensureControlNode(path, sysDev string) error {
	b, err := os.ReadFile(sysDev)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dm: device-mapper is not in the kernel (no %s; load dm_mod)", sysDev)
	}
	if err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return fmt.Errorf("dm: %s holds %q, not major:minor", sysDev, b)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("dm: %w", err)
	}
	return ensureNode(path, unix.S_IFCHR, unix.Mkdev(major, minor))
}

// Close closes the control device. Calls still running finish; later ones fail.
func (c *Control) Close() error { return c.f.Close() }

// ioctl issues one device-mapper ioctl on buf, retrying if a signal interrupted it.
func (c *Control) ioctl(cmd uintptr, buf []byte) error {
	var errno unix.Errno
	err := c.conn.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, cmd, uintptr(unsafe.Pointer(&buf[0])))
			if errno != unix.EINTR {
				return
			}
		}
	})
	runtime.KeepAlive(buf)
	if err != nil {
		return fmt.Errorf("dm: control device: %w", err)
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// request is one ioctl to run.
type request struct {
	cmd     uintptr
	op      string
	detail  string // for errors: the message of DM_TARGET_MSG
	header  header
	payload []byte
	// reply is the room to leave for a reply of variable size (0: none). If it is not
	// enough, the request is repeated with twice the room, unless once is set.
	reply int
	once  bool
}

// do runs a request and returns the buffer the kernel filled in.
func (c *Control) do(req request) (reply, error) {
	size := headerSize + max(len(req.payload), req.reply)
	if size > maxBuffer {
		return nil, invalid("%s %s: request of %d bytes, more than %d", req.op, req.header.name, size, maxBuffer)
	}
	for {
		buf := encodeRequest(size, req.header, req.payload)
		if err := c.ioctl(req.cmd, buf); err != nil {
			var errno unix.Errno
			if errors.As(err, &errno) {
				return nil, &Error{Op: req.op, Name: req.header.name, Detail: req.detail, Errno: errno}
			}
			return nil, err
		}
		r := reply(buf)
		if r.flags()&unix.DM_BUFFER_FULL_FLAG == 0 {
			return r, nil
		}
		if req.once {
			return nil, fmt.Errorf("dm: %s %s %q: reply larger than %d bytes (the message was delivered)",
				req.op, req.header.name, req.detail, size-headerSize)
		}
		if size >= maxBuffer {
			return nil, fmt.Errorf("dm: %s %s: reply larger than %d bytes", req.op, req.header.name, maxBuffer)
		}
		size = min(2*size, maxBuffer)
	}
}

// onDevice runs req addressed to the device called name.
func (c *Control) onDevice(name string, req request) (reply, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	req.header.name = name
	return c.do(req)
}

// deviceInfo runs req addressed to the device called name and returns the device's state
// from the reply.
func (c *Control) deviceInfo(name string, req request) (DeviceInfo, error) {
	r, err := c.onDevice(name, req)
	if err != nil {
		return DeviceInfo{}, err
	}
	return r.info(), nil
}

// Version returns the kernel's ioctl interface version.
func (c *Control) Version() (Version, error) {
	r, err := c.do(request{cmd: unix.DM_VERSION, op: opVersion})
	if err != nil {
		return Version{}, err
	}
	return r.version(), nil
}

// TargetVersions returns the target types the kernel has now, by name ("thin-pool", "thin",
// "linear", ...). A target type whose module is not loaded is absent; loading a table that
// uses it makes the kernel load the module (request_module), if it can.
func (c *Control) TargetVersions() (map[string]Version, error) {
	r, err := c.do(request{cmd: unix.DM_LIST_VERSIONS, op: opListVersions, reply: minReply})
	if err != nil {
		return nil, err
	}
	data, err := r.data()
	if err != nil {
		return nil, err
	}
	return decodeVersions(data)
}

// Create makes a device with no table (I/O to it fails until a table is loaded and resumed).
// An empty uuid means none. A name or UUID in use: ErrExists.
func (c *Control) Create(name, uuid string) (DeviceInfo, error) {
	if err := ValidateUUID(uuid); err != nil {
		return DeviceInfo{}, err
	}
	return c.deviceInfo(name, request{cmd: unix.DM_DEV_CREATE, op: opCreate, header: header{uuid: uuid}})
}

// Load puts table in the device's inactive slot (replacing what was there); Resume makes it
// live. The kernel builds the targets now, so a table it cannot build (a bad parameter, a
// missing underlying device, a thin id the pool does not have) fails here; but it checks that
// the targets fit their underlying devices only when Resume swaps the table in. With readOnly
// the device refuses writes once the table is live.
func (c *Control) Load(name string, table []Target, readOnly bool) error {
	if err := validateTable(table); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	h := header{targetCount: uint32(len(table))}
	if readOnly {
		h.flags |= unix.DM_READONLY_FLAG
	}
	_, err := c.onDevice(name, request{cmd: unix.DM_TABLE_LOAD, op: opTableLoad, header: h, payload: encodeTargets(table)})
	return err
}

// ClearInactive drops the table in the inactive slot, if any (a Load that will not be
// resumed).
func (c *Control) ClearInactive(name string) error {
	_, err := c.onDevice(name, request{cmd: unix.DM_TABLE_CLEAR, op: opTableClear})
	return err
}

// validateTable checks what the kernel would otherwise refuse with a bare EINVAL: targets
// cover sectors from 0 without gaps, each with a length, a type name of 1 to 15 bytes and no
// NUL bytes.
func validateTable(table []Target) error {
	if len(table) == 0 {
		return invalid("empty table")
	}
	var next, size uint64
	for i, t := range table {
		switch {
		case t.Start != next:
			return invalid("target %d starts at sector %d, not %d", i, t.Start, next)
		case t.Length == 0:
			return invalid("target %d has no length", i)
		case t.Start+t.Length < t.Start:
			return invalid("target %d ends past 2^64 sectors", i)
		case t.Type == "" || len(t.Type) > MaxTypeLen || strings.ContainsRune(t.Type, 0):
			return invalid("target %d type %q is not 1 to %d bytes without NUL", i, t.Type, MaxTypeLen)
		case strings.ContainsRune(t.Params, 0):
			return invalid("target %d parameters contain a NUL byte", i)
		}
		next = t.Start + t.Length
		size += uint64(align8(specSize + len(t.Params) + 1))
	}
	if size > maxBuffer-headerSize {
		return invalid("table of %d bytes, more than %d", size, maxBuffer-headerSize)
	}
	return nil
}

// Suspend holds new I/O to the device until Resume. Unless noFlush, it first waits for the I/O
// in flight to complete (and freezes a file system mounted on the device); with noFlush, I/O
// the targets hold back (a thin pool out of space) is requeued for after the resume instead
// of waited for. Suspending a suspended device does nothing.
func (c *Control) Suspend(name string, noFlush bool) error {
	h := header{flags: unix.DM_SUSPEND_FLAG}
	if noFlush {
		h.flags |= unix.DM_NOFLUSH_FLAG
	}
	_, err := c.onDevice(name, request{cmd: unix.DM_DEV_SUSPEND, op: opSuspend, header: h})
	return err
}

// Resume makes the inactive table live if there is one (suspending the device for the swap
// if it runs) and lets I/O flow. Resuming a running device with no inactive table does
// nothing. If the swap fails (a target larger than its device: ErrInvalid), the loaded table
// is gone and the device stays suspended with its old table: Resume again, or Remove it.
func (c *Control) Resume(name string) (DeviceInfo, error) {
	return c.deviceInfo(name, request{cmd: unix.DM_DEV_SUSPEND, op: opSuspend})
}

// Remove destroys the device and its tables. An open device: ErrBusy (the device is left
// as it was). Its node, if EnsureNode made one, stays; see RemoveNode.
func (c *Control) Remove(name string) error {
	_, err := c.onDevice(name, request{cmd: unix.DM_DEV_REMOVE, op: opRemove})
	return err
}

// Info returns the device's state. No such device: ErrNotFound.
func (c *Control) Info(name string) (DeviceInfo, error) {
	return c.deviceInfo(name, request{cmd: unix.DM_DEV_STATUS, op: opStatus})
}

// List returns the devices whose names start with prefix ("" for all), in name order. The
// kernel filters by prefix since interface 4.45; List filters again for older ones.
func (c *Control) List(prefix string) ([]Device, error) {
	if len(prefix) > MaxNameLen || strings.ContainsRune(prefix, 0) {
		return nil, invalid("name prefix %q", prefix)
	}
	room := max(int(c.listHint.Load()), minReply)
	r, err := c.do(request{cmd: unix.DM_LIST_DEVICES, op: opListDevices,
		header: header{name: prefix, flags: unix.DM_UUID_FLAG}, reply: room})
	if err != nil {
		return nil, err
	}
	c.listHint.Store(int64(len(r) - headerSize))
	data, err := r.data()
	if err != nil {
		return nil, err
	}
	devs, err := decodeNameList(data)
	if err != nil {
		return nil, err
	}
	out := devs[:0]
	for _, d := range devs {
		if strings.HasPrefix(d.Name, prefix) {
			out = append(out, d)
		}
	}
	return out, nil
}

// Table returns the device's live table, as the kernel writes it back: devices as
// "major:minor", parameters normalized by each target. No live table: an empty table.
func (c *Control) Table(name string) ([]Target, error) {
	return c.tableStatus(name, unix.DM_STATUS_TABLE_FLAG)
}

// Status returns each target of the live table with its status line in Params (for a
// thin-pool: see thin.ParsePoolStatus). Some targets bring their state up to date first (a
// thin pool commits its metadata); noFlush asks them not to, for a cheaper, possibly older
// answer.
func (c *Control) Status(name string, noFlush bool) ([]Target, error) {
	var flags uint32
	if noFlush {
		flags = unix.DM_NOFLUSH_FLAG
	}
	return c.tableStatus(name, flags)
}

func (c *Control) tableStatus(name string, flags uint32) ([]Target, error) {
	r, err := c.onDevice(name, request{cmd: unix.DM_TABLE_STATUS, op: opTableStatus,
		header: header{flags: flags}, reply: minReply})
	if err != nil {
		return nil, err
	}
	data, err := r.data()
	if err != nil {
		return nil, err
	}
	return decodeTargets(data, r.info().TargetCount)
}

// Message sends msg to the target of the live table that maps sector (0 for single-target
// devices such as a thin pool) and returns the target's reply, if it gave one. A message is
// sent once only: it is not idempotent in general.
func (c *Control) Message(name string, sector uint64, msg string) (string, error) {
	if strings.TrimSpace(msg) == "" || strings.ContainsRune(msg, 0) {
		return "", invalid("%s: message %q is empty or contains a NUL byte", name, msg)
	}
	payload := encodeMessage(sector, msg)
	r, err := c.onDevice(name, request{cmd: unix.DM_TARGET_MSG, op: opTargetMsg, detail: msg,
		payload: payload, reply: max(len(payload), minReply), once: true})
	if err != nil {
		return "", err
	}
	if r.flags()&unix.DM_DATA_OUT_FLAG == 0 {
		return "", nil
	}
	data, err := r.data()
	if err != nil {
		return "", err
	}
	return cstr(data), nil
}

// CreateAndLoad creates a device, loads table and resumes it: a live device in one call. If
// loading or resuming fails, it removes the device it created. A device of that name already
// there is left alone: ErrExists.
func (c *Control) CreateAndLoad(name, uuid string, table []Target, readOnly bool) (DeviceInfo, error) {
	if err := validateTable(table); err != nil {
		return DeviceInfo{}, fmt.Errorf("%s: %w", name, err)
	}
	if _, err := c.Create(name, uuid); err != nil {
		return DeviceInfo{}, err
	}
	err := c.Load(name, table, readOnly)
	if err == nil {
		var info DeviceInfo
		if info, err = c.Resume(name); err == nil {
			return info, nil
		}
	}
	if rerr := c.Remove(name); rerr != nil {
		return DeviceInfo{}, fmt.Errorf("%w (removing the half-made device failed too: %v)", err, rerr)
	}
	return DeviceInfo{}, err
}
