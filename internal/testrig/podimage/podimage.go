// Package podimage builds the test pods' container images with no
// registry: the static program in ./podbin, packed as an OCI image
// archive (an OCI layout in a tar, as `ctr images import` reads it) with
// one uncompressed layer, named so that containerd's CRI plugin finds it
// under that name (the kubelet then runs it with imagePullPolicy Never).
package podimage

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// Image is one image to build: its full reference (host/name:tag) and
// the command it runs (podbin's role and arguments).
type Image struct {
	Ref string
	Cmd []string
}

// Pause is the sandbox image: containerd's sandbox_image points at it.
var Pause = Image{Ref: "weft.test/pause:1", Cmd: []string{"pause"}}

// Server is the workload image: `podbin serve`, its ports from the pod
// spec's args.
var Server = Image{Ref: "weft.test/podbin:1", Cmd: []string{"serve"}}

// BuildProgram compiles podbin statically into dir and returns its path.
func BuildProgram(dir string) (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("podimage: no source path for podbin")
	}
	out := filepath.Join(dir, "podbin")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = filepath.Join(filepath.Dir(self), "podbin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build podbin: %w\n%s", err, b)
	}
	return out, nil
}

// Archive writes img as an OCI image archive at path, with the program
// at bin as /podbin, the image's entrypoint.
func Archive(path, bin string, img Image) error {
	prog, err := os.ReadFile(bin)
	if err != nil {
		return fmt.Errorf("podimage %s: %w", img.Ref, err)
	}
	layer, err := layerTar(prog)
	if err != nil {
		return fmt.Errorf("podimage %s: layer: %w", img.Ref, err)
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{"/podbin"}, "Cmd": img.Cmd, "WorkingDir": "/"},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest(layer)}},
	})
	if err != nil {
		return err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config, nil),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer, nil)},
	})
	if err != nil {
		return err
	}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{descriptor("application/vnd.oci.image.manifest.v1+json", manifest, map[string]string{
			// containerd names the imported image by the first; the
			// second is the OCI layout's own tag.
			"io.containerd.image.name":          img.Ref,
			"org.opencontainers.image.ref.name": img.Ref,
		})},
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(layer), layer},
		{blobPath(config), config},
		{blobPath(manifest), manifest},
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := writeFile(tw, f.name, 0o644, f.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("podimage %s: %w", img.Ref, err)
	}
	return nil
}

// epoch keeps the archives reproducible.
var epoch = time.Unix(0, 0)

func layerTar(prog []byte) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := writeFile(tw, "podbin", 0o755, prog); err != nil {
		return nil, err
	}
	// The runtime bind-mounts /etc/hosts, resolv.conf and hostname and
	// creates /proc, /dev and /sys; these give it mount points.
	for _, d := range []string{"etc/", "proc/", "dev/", "sys/", "tmp/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func writeFile(tw *tar.Writer, name string, mode int64, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: epoch}); err != nil {
		return err
	}
	_, err := tw.Write(data)
	return err
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func blobPath(b []byte) string {
	s := sha256.Sum256(b)
	return "blobs/sha256/" + hex.EncodeToString(s[:])
}

func descriptor(mediaType string, b []byte, annotations map[string]string) map[string]any {
	d := map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
	if annotations != nil {
		d["annotations"] = annotations
	}
	return d
}
