package openstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/vishvananda/netns"

	"github.com/weftnet/weft/config"
)

// Files are where weft init keeps the instance's metadata.
type Files struct {
	MetaData    string // meta_data.json: the instance's uuid
	VendorData2 string // vendor_data2.json: the credential, with join.openstack.vendorData2
}

// Run joins the node to cfg's OpenStack (join.openstack, which must be
// set) until ctx ends: it reads the instance's uuid (and, with
// vendorData2, its credential) from files, authenticates, then follows
// the instance's ports; with computeHost, it follows instead the ports
// bound to that host as taps, on the taps of this namespace. A step that fails is retried with a growing delay
// (PollInterval to a minute); the agent's endpoints are left as they are
// meanwhile.
func Run(ctx context.Context, cfg *config.Config, agent Endpoints, files Files, log *slog.Logger) error {
	if cfg.Join.OpenStack == nil {
		return errors.New("join.openstack is not set")
	}
	if log == nil {
		log = slog.Default()
	}
	var instance string
	var s *Session
	j := cfg.Join.OpenStack
	if j.ComputeHost == "" {
		retry(ctx, log, "openstack: instance uuid", func() (err error) {
			instance, err = instanceUUID(files.MetaData)
			return err
		})
	}
	if j.VendorData2 {
		retry(ctx, log, "openstack: credential", func() error {
			b, err := os.ReadFile(files.VendorData2)
			if err != nil {
				return fmt.Errorf("join.openstack.vendorData2: %w", err)
			}
			v, err := config.ParseVendorData2(b)
			if err != nil {
				return fmt.Errorf("join.openstack.vendorData2: %s: %w", files.VendorData2, err)
			}
			j = j.WithVendorData2(v)
			return nil
		})
	}
	retry(ctx, log, "openstack: keystone", func() (err error) {
		s, err = Dial(ctx, j, log)
		return err
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f := &Follower{Session: s, Agent: agent, Mapping: NewMapping(cfg), Instance: instance, Log: log}
	if j.ComputeHost != "" {
		links, err := HostLinks(netns.None(), log)
		if err != nil {
			return err
		}
		f.Host, f.Links = j.ComputeHost, links
		log.Info("openstack: following the ports bound to this compute host", "host", j.ComputeHost, "interval", PollInterval)
	} else {
		log.Info("openstack: following the instance's ports", "instance", instance, "interval", PollInterval)
	}
	return f.Run(ctx)
}

// retry calls step until it succeeds or ctx ends, logging each failure.
func retry(ctx context.Context, log *slog.Logger, what string, step func() error) {
	wait := PollInterval
	for ctx.Err() == nil {
		err := step()
		if err == nil {
			return
		}
		log.Warn(what, "err", err, "retry", wait)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, maxBackoff)
	}
}

// instanceUUID is meta_data.json's uuid: the device_id of the instance's
// Neutron ports (Nova sets it for VMs and Ironic instances alike).
func instanceUUID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("the instance's uuid: %w", err)
	}
	md, err := config.ParseMetaData(b)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if md.UUID == "" {
		return "", fmt.Errorf("%s: no uuid: not an OpenStack instance's metadata", path)
	}
	return md.UUID, nil
}
