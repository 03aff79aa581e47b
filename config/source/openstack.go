package source

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/weftnet/weft/config"
)

// The OpenStack layout, shared by the config drive (a directory tree) and
// the metadata service (URLs under a base).
const (
	openstackDir    = "openstack/latest"
	metaDataFile    = "meta_data.json"
	networkDataFile = "network_data.json"
	userDataFile    = "user_data"
	vendorData2File = "vendor_data2.json"
)

// readOpenStackTree reads openstack/latest/* from a mounted config drive
// or a directory. Each file stands or falls on its own: one that cannot be
// read or parsed goes to the bundle's Broken, and the others are kept (a
// truncated network_data.json must not lose a valid weft.yaml). Only a
// tree without openstack/latest is an error.
func readOpenStackTree(fsys fs.FS, src string) (*config.Bundle, error) {
	const dir = openstackDir
	if _, err := fs.Stat(fsys, dir); err != nil {
		return nil, fmt.Errorf("%s: no %s directory: %w", src, dir, err)
	}
	b := &config.Bundle{Source: src}
	read := func(name string) []byte {
		data, err := readFile(fsys, dir+"/"+name)
		if err != nil {
			b.Broken = append(b.Broken, config.FileError{File: name, Err: err})
		}
		return data
	}
	if md := read(metaDataFile); md != nil {
		parseMetaData(b, md)
	}
	if nd := read(networkDataFile); nd != nil {
		parseNetworkData(b, nd)
	}
	b.UserData = read(userDataFile)
	b.VendorData2 = read(vendorData2File)
	return b, nil
}

// readFile reads one file of the layout; absent is nil and no error.
func readFile(fsys fs.FS, path string) ([]byte, error) {
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, config.MaxUserData+1))
	if err != nil {
		return nil, err
	}
	if len(data) > config.MaxUserData {
		return nil, fmt.Errorf("more than %d bytes", config.MaxUserData)
	}
	return data, nil
}

// parseMetaData and parseNetworkData parse one file into b, or record it
// as broken.
func parseMetaData(b *config.Bundle, data []byte) {
	md, err := config.ParseMetaData(data)
	if err != nil {
		b.Broken = append(b.Broken, config.FileError{File: metaDataFile, Err: err})
		return
	}
	b.MetaData = md
}

func parseNetworkData(b *config.Bundle, data []byte) {
	nd, err := config.ParseNetworkData(data)
	if err != nil {
		b.Broken = append(b.Broken, config.FileError{File: networkDataFile, Err: err})
		return
	}
	b.NetworkData = nd
}
