package main

import (
	"context"
	"io"
	"strings"

	"github.com/nvmeof-csi/nvmeof-csi/pkg/csi/contract"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/inventory"
	"github.com/nvmeof-csi/nvmeof-csi/pkg/nvme"
)

// nqnPrefix starts every subsystem NQN an nvmeof-csi agent exports:
// <nqnPrefix><storage node>:<agent volume ID>:h<host hash> (pkg/agent).
const nqnPrefix = contract.SubsystemNQNPrefix

// pathRow is one row of `paths`: one NVMe controller of this machine.
type pathRow struct {
	Controller string `json:"controller"`
	// Volume is the CSI volume ID the subsystem exports.
	Volume    string `json:"volume"`
	Subsystem string `json:"subsystem"`
	Transport string `json:"transport"`
	Address   string `json:"address"`
	State     string `json:"state"`
	ANA       string `json:"ana,omitempty"`
}

func (e *env) localInitiator() *nvme.Initiator {
	if e.initiator == nil {
		e.initiator = &nvme.Initiator{SysfsRoot: e.opts.sysfsRoot}
	}
	return e.initiator
}

// localPaths lists this machine's controllers of nvmeof-csi subsystems.
func (e *env) localPaths() ([]pathRow, error) {
	in := e.localInitiator()
	ctrls, err := inventory.Controllers(in, nqnPrefix)
	if err != nil {
		return nil, err
	}
	rows := []pathRow{}
	for _, c := range ctrls {
		ana, err := in.ANAState(c.Name)
		if err != nil {
			ana = "?"
		}
		addr := c.Address
		if c.ServiceID != "" {
			addr += ":" + c.ServiceID
		}
		rows = append(rows, pathRow{Controller: c.Name, Volume: volumeOfSubsystem(c.SubsysNQN), Subsystem: c.SubsysNQN,
			Transport: c.Transport, Address: addr, State: c.State, ANA: ana})
	}
	return rows, nil
}

// volumeOfSubsystem returns the CSI volume ID a subsystem NQN of ours names ("" if none).
func volumeOfSubsystem(nqn string) string {
	rest, ok := strings.CutPrefix(nqn, nqnPrefix)
	if !ok {
		return ""
	}
	parts := strings.Split(rest, ":")
	if len(parts) < 2 {
		return ""
	}
	return parts[0] + "/" + parts[1]
}

func runPaths(_ context.Context, e *env) error {
	rows, err := e.localPaths()
	if err != nil {
		return err
	}
	return render(e, map[string]any{"paths": rows}, func(w io.Writer) {
		row(w, "CONTROLLER", "VOLUME", "TRANSPORT", "ADDRESS", "STATE", "ANA")
		for _, p := range rows {
			row(w, p.Controller, orDash(p.Volume), p.Transport, orDash(p.Address), p.State, orDash(p.ANA))
		}
	})
}
