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
)

// readOpenStackTree reads openstack/latest/* from a mounted config drive.
func readOpenStackTree(fsys fs.FS, src string) (*config.Bundle, error) {
	const dir = openstackDir
	if _, err := fs.Stat(fsys, dir); err != nil {
		return nil, fmt.Errorf("%s: no %s directory: %w", src, dir, err)
	}
	b := &config.Bundle{Source: src}
	read := func(name string) ([]byte, error) {
		f, err := fsys.Open(dir + "/" + name)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", src, name, err)
		}
		defer f.Close()
		data, err := io.ReadAll(io.LimitReader(f, config.MaxUserData+1))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", src, name, err)
		}
		if len(data) > config.MaxUserData {
			return nil, fmt.Errorf("%s: %s: more than %d bytes", src, name, config.MaxUserData)
		}
		return data, nil
	}
	md, err := read(metaDataFile)
	if err != nil {
		return nil, err
	}
	if md != nil {
		if b.MetaData, err = config.ParseMetaData(md); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	nd, err := read(networkDataFile)
	if err != nil {
		return nil, err
	}
	if nd != nil {
		if b.NetworkData, err = config.ParseNetworkData(nd); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
	}
	if b.UserData, err = read(userDataFile); err != nil {
		return nil, err
	}
	return b, nil
}
