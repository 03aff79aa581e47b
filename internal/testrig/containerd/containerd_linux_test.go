package containerd_test

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/internal/testrig/containerd"
	"github.com/weftnet/weft/internal/testrig/podimage"
)

// The images the test builds import into a containerd of the test's own,
// and runc runs them: the pause image sleeps until stopped, the server
// image's program starts.
func TestImagesRun(t *testing.T) {
	dir := t.TempDir()
	d := containerd.Start(t, containerd.Config{CNIBinDir: dir, CNIConfDir: dir, SandboxImage: podimage.Pause.Ref})
	bin, err := podimage.BuildProgram(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []podimage.Image{podimage.Pause, podimage.Server} {
		p := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(img.Ref)+".tar")
		if err := podimage.Archive(p, bin, img); err != nil {
			t.Fatal(err)
		}
		d.Import(t, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.Ctr(ctx, "images", "ls", "-q")
	if err != nil || !strings.Contains(out, podimage.Pause.Ref) || !strings.Contains(out, podimage.Server.Ref) {
		t.Fatalf("images: %v\n%s", err, out)
	}
	// The CRI plugin is loaded (the kubelet talks to it).
	if out, err := d.Ctr(ctx, "plugins", "ls"); err != nil || !regexp.MustCompile(`io.containerd.grpc.v1 +cri +\S+ +ok`).MatchString(out) {
		t.Fatalf("plugins: %v\n%s", err, out)
	}
	// runc runs the program from the image: with no role it prints its
	// usage and exits 2.
	out, err = d.Ctr(ctx, "run", "--rm", podimage.Server.Ref, "weft-smoke", "/podbin")
	if err == nil || !strings.Contains(out, "usage: podbin pause") {
		t.Fatalf("run: %v, want podbin's usage\n%s", err, out)
	}
}
