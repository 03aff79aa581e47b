package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/weftnet/weft/image"
)

func init() {
	register("image", "build the bootable artifacts (kernel, initramfs, iPXE script)", runImage)
}

func runImage(args []string) error {
	if len(args) == 0 || args[0] != "build" {
		return groupUsage("image", args, map[string]string{"build": "build the bootable artifacts (--out DIR --cache DIR)"})
	}
	fs := newFlags("image build", "image build --out DIR --cache DIR [--binary PATH] [--cmdline EXTRA]")
	var opt image.Options
	fs.StringVar(&opt.Out, "out", "", "directory to write vmlinuz, vmlinux, initramfs.cpio.gz, boot.ipxe and manifest.json to")
	fs.StringVar(&opt.Cache, "cache", "", "kernel cache directory (the downloaded package and the extracted subset)")
	fs.StringVar(&opt.Binary, "binary", "", "static weft binary to pack as /init (default: this executable)")
	fs.StringVar(&opt.Cmdline, "cmdline", "", "extra kernel parameters for boot.ipxe")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if opt.Out == "" || opt.Cache == "" {
		return errors.New("--out and --cache are required")
	}
	opt.Progress = os.Stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := image.Build(ctx, opt)
	return err
}
