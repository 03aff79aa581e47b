package fastpath

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/weftnet/weft/internal/testrig/nettest"
	"github.com/weftnet/weft/internal/testrig/testenv"
)

// TestAttachTC attaches a program with tc (clsact, direct action), the
// way for kernels without TCX (the image's 6.1), and checks that it runs
// on the device's ingress and that Close takes it off.
func TestAttachTC(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ping")
	var objs fpObjects
	if err := loadFpObjects(&objs, nil); err != nil {
		testenv.Unavailable(t, "the kernel does not load the fast path: "+err.Error())
	}
	defer objs.Close()
	d := &Datapath{objs: objs}
	one, two := nettest.New(t, "wtfpa-1"), nettest.New(t, "wtfpa-2")
	nettest.Veth(t, one, "a", "10.9.0.1/24", two, "b", "10.9.0.2/24")
	var f hook
	err := one.Do(func() error {
		l, err := netlink.LinkByName("a")
		if err != nil {
			return err
		}
		// punt_ingress counts what it redirects; to a veth whose peer is
		// in the same namespace the redirect then fails (dropped).
		if err := objs.Taps.Put(uint32(l.Attrs().Index), uint32(l.Attrs().Index)); err != nil {
			return err
		}
		f, err = attachTC(l.Attrs().Index, objs.PuntIngress)
		return err
	})
	if err != nil {
		t.Fatalf("attach with tc: %v", err)
	}
	two.Try(5*time.Second, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.9.0.1")
	ran := d.Counters().PuntedTx
	if ran == 0 {
		t.Fatal("the program attached with tc never ran")
	}
	if err := one.Do(f.detach); err != nil {
		t.Fatalf("detach: %v", err)
	}
	if out, err := two.Try(5*time.Second, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.9.0.1"); err != nil {
		t.Fatalf("ping after the filter went: %v\n%s", err, out)
	}
	if n := d.Counters().PuntedTx; n != ran {
		t.Errorf("the program ran %d more times after Close", n-ran)
	}
}
