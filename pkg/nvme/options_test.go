package nvme

import (
	"errors"
	"strings"
	"testing"
)

const (
	testHostID  = "11111111-2222-4333-8444-555555555555"
	testHostNQN = UUIDNQNPrefix + testHostID
	testNQN1    = "nqn.2024-01.io.example:vol1"
	testNQN2    = "nqn.2024-01.io.example:vol2"
	testUUID1   = "6c1f2a3e-0d4b-4c5a-9e8f-0123456789ab"
	testUUID2   = "0b7e6a52-8f3d-4d1c-a2b4-c5d6e7f80912"
	// testSecret is a syntactically valid DH-HMAC-CHAP secret (48-byte key, base64 padding).
	testSecret = "DHHC-1:02:cmFuZG9tIGtleSBtYXRlcmlhbCBmb3IgdGVzdHMgb25seSwgbm90IGEgcmVhbCBvbmUhISEhIQ==:"
)

func baseOptions() ConnectOptions {
	return ConnectOptions{
		Transport: TransportTCP,
		Address:   "192.0.2.1",
		SubsysNQN: testNQN1,
		HostNQN:   testHostNQN,
		HostID:    testHostID,
	}
}

func TestOptionStringCarriesEveryOptionInOrder(t *testing.T) {
	full := baseOptions()
	full.ServiceID = "4421"
	full.CtrlLossTmo, full.ReconnectDelay, full.KeepAliveTmo, full.NrIOQueues = 60, 2, 7, 4
	full.DHChapSecret, full.DHChapCtrlSecret = testSecret, testSecret

	v6 := baseOptions()
	v6.Transport, v6.Address = TransportRDMA, "2001:DB8:0:0::1"

	for _, tc := range []struct {
		name string
		in   ConnectOptions
		want string
	}{
		{"defaults omitted, port 4420", baseOptions(),
			"nqn=" + testNQN1 + ",transport=tcp,traddr=192.0.2.1,trsvcid=4420,hostnqn=" + testHostNQN + ",hostid=" + testHostID},
		{"all options", full,
			"nqn=" + testNQN1 + ",transport=tcp,traddr=192.0.2.1,trsvcid=4421,hostnqn=" + testHostNQN + ",hostid=" + testHostID +
				",ctrl_loss_tmo=60,reconnect_delay=2,keep_alive_tmo=7,nr_io_queues=4,dhchap_secret=" + testSecret + ",dhchap_ctrl_secret=" + testSecret},
		{"IPv6 in canonical form", v6,
			"nqn=" + testNQN1 + ",transport=rdma,traddr=2001:db8::1,trsvcid=4420,hostnqn=" + testHostNQN + ",hostid=" + testHostID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := tc.in.normalized()
			if err != nil {
				t.Fatal(err)
			}
			if got := o.optionString(); got != tc.want {
				t.Errorf("option string\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestConnectOptionsRejectInjectionAndMalformedValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*ConnectOptions)
	}{
		{"comma in subsystem NQN", func(o *ConnectOptions) { o.SubsysNQN = testNQN1 + ",hostnqn=nqn.evil" }},
		{"equals in subsystem NQN", func(o *ConnectOptions) { o.SubsysNQN = "nqn.x=y" }},
		{"newline in host NQN", func(o *ConnectOptions) { o.HostNQN = testHostNQN + "\nnqn=x" }},
		{"space in host NQN", func(o *ConnectOptions) { o.HostNQN = "nqn.2024-01.io.example:a b" }},
		{"NUL in host NQN", func(o *ConnectOptions) { o.HostNQN = "nqn.2024-01.io.example:a\x00" }},
		{"NQN without nqn. prefix", func(o *ConnectOptions) { o.SubsysNQN = "iqn.2024-01.io.example:vol1" }},
		{"bare nqn.", func(o *ConnectOptions) { o.SubsysNQN = "nqn." }},
		{"NQN longer than 223 bytes", func(o *ConnectOptions) { o.SubsysNQN = "nqn.2024-01.io.example:" + strings.Repeat("a", 201) }},
		{"invalid UTF-8 NQN", func(o *ConnectOptions) { o.SubsysNQN = "nqn.2024-01.io.example:\xff" }},
		{"host ID not a UUID", func(o *ConnectOptions) { o.HostID = "host-1" }},
		{"host ID with injection", func(o *ConnectOptions) { o.HostID = testHostID + ",nr_io_queues=1" }},
		{"empty host ID", func(o *ConnectOptions) { o.HostID = "" }},
		{"unknown transport", func(o *ConnectOptions) { o.Transport = "fc" }},
		{"transport with injection", func(o *ConnectOptions) { o.Transport = "tcp,traddr=10.0.0.1" }},
		{"host name instead of address", func(o *ConnectOptions) { o.Address = "storage.example" }},
		{"address with injection", func(o *ConnectOptions) { o.Address = "192.0.2.1,trsvcid=1" }},
		{"port not a number", func(o *ConnectOptions) { o.ServiceID = "nvme" }},
		{"port out of range", func(o *ConnectOptions) { o.ServiceID = "65536" }},
		{"port with injection", func(o *ConnectOptions) { o.ServiceID = "4420,ctrl_loss_tmo=-1" }},
		{"reconnect forever", func(o *ConnectOptions) { o.CtrlLossTmo = -1 }},
		{"negative queues", func(o *ConnectOptions) { o.NrIOQueues = -4 }},
		{"secret not in DHHC-1 form", func(o *ConnectOptions) { o.DHChapSecret = "password" }},
		{"secret with injection", func(o *ConnectOptions) { o.DHChapSecret = "DHHC-1:00:YWJj:,nqn=x" }},
		{"controller secret alone", func(o *ConnectOptions) { o.DHChapCtrlSecret = testSecret }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := baseOptions()
			tc.mutate(&o)
			_, err := o.normalized()
			if !errors.Is(err, ErrInvalidOption) {
				t.Fatalf("normalized() error = %v, want ErrInvalidOption", err)
			}
		})
	}
}

func TestConnectOptionsNeverShowSecrets(t *testing.T) {
	o := baseOptions()
	o.DHChapSecret, o.DHChapCtrlSecret = testSecret, testSecret
	key := testSecret[len("DHHC-1:02:") : len(testSecret)-1]
	if s := o.String(); strings.Contains(s, key[:8]) {
		t.Errorf("String() = %q shows a secret", s)
	}
	o.DHChapCtrlSecret = testSecret[:20] + "," + testSecret[20:]
	if _, err := o.normalized(); err == nil || strings.Contains(err.Error(), key[:8]) {
		t.Errorf("normalized() error %v shows the secret", err)
	}
}
