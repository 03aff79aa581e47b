package source

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"unicode/utf16"
)

// Filesystem types readLabel recognises, named as mount(2) wants them.
const (
	fsISO9660 = "iso9660"
	fsVFAT    = "vfat"
)

// readLabel reads the filesystem type and volume label of a block device
// (or image) from its first sectors: an ISO 9660 volume descriptor set at
// byte 32768 (the Joliet label when the primary one is empty), or a FAT boot
// sector (label at byte 43 for FAT12/16, 71 for FAT32). An unrecognised or
// too short device returns fstype "" and a nil error; only I/O errors are
// errors. It never reads more than 64 KiB.
func readLabel(r io.ReaderAt) (fstype, label string, err error) {
	if l, ok, err := isoLabel(r); err != nil || ok {
		return fsISO9660, l, err
	}
	if l, ok, err := fatLabel(r); err != nil || ok {
		return fsVFAT, l, err
	}
	return "", "", nil
}

// readFull reads len(b) bytes at off; a device too short for them is not an
// error but "not there" (ok false).
func readFull(r io.ReaderAt, b []byte, off int64) (bool, error) {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return true, nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false, nil
	}
	return false, err
}

const (
	isoSector    = 2048
	isoFirstDesc = 16 // descriptors start at sector 16 (byte 32768)
	isoMaxDescs  = 16 // a real set has 2-4; bound the scan
)

func isoLabel(r io.ReaderAt) (string, bool, error) {
	var d [isoSector]byte
	primary, joliet, found := "", "", false
scan:
	for i := range isoMaxDescs {
		ok, err := readFull(r, d[:], int64(isoFirstDesc+i)*isoSector)
		if err != nil {
			return "", false, err
		}
		if !ok || string(d[1:6]) != "CD001" || d[6] != 1 {
			break
		}
		switch d[0] {
		case 1: // primary volume descriptor
			found = true
			primary = strings.TrimRight(string(bytes.TrimRight(d[40:72], "\x00")), " ")
		case 2: // supplementary: Joliet when its escape sequence says UCS-2
			esc := d[88:91]
			if esc[0] == '%' && esc[1] == '/' && (esc[2] == '@' || esc[2] == 'C' || esc[2] == 'E') {
				joliet = ucs2(d[40:72])
			}
		case 255: // set terminator
			break scan
		}
	}
	if !found {
		return "", false, nil
	}
	if primary == "" {
		primary = joliet
	}
	return primary, true, nil
}

func ucs2(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u = append(u, binary.BigEndian.Uint16(b[i:]))
	}
	return strings.TrimRight(string(utf16.Decode(u)), " \x00")
}

func fatLabel(r io.ReaderAt) (string, bool, error) {
	var bs [512]byte
	ok, err := readFull(r, bs[:], 0)
	if err != nil || !ok {
		return "", false, err
	}
	if bs[510] != 0x55 || bs[511] != 0xaa || (bs[0] != 0xeb && bs[0] != 0xe9) {
		return "", false, nil
	}
	bytesPerSector := binary.LittleEndian.Uint16(bs[11:])
	perCluster := bs[13]
	reserved := binary.LittleEndian.Uint16(bs[14:])
	fats := bs[16]
	switch bytesPerSector {
	case 512, 1024, 2048, 4096:
	default:
		return "", false, nil
	}
	if perCluster == 0 || perCluster&(perCluster-1) != 0 || reserved == 0 || fats == 0 {
		return "", false, nil
	}
	fatSize16 := binary.LittleEndian.Uint16(bs[22:])
	fatSize32 := binary.LittleEndian.Uint32(bs[36:])
	// FAT32 has no 16-bit FAT size; its extended boot record is at 64.
	sigOff, labelOff := 38, 43
	if fatSize16 == 0 {
		if fatSize32 == 0 {
			return "", false, nil
		}
		sigOff, labelOff = 66, 71
	}
	if bs[sigOff] != 0x29 { // no extended boot signature: no label field
		return "", true, nil
	}
	label := strings.TrimRight(string(bytes.TrimRight(bs[labelOff:labelOff+11], "\x00")), " ")
	if label == "NO NAME" {
		label = ""
	}
	return label, true, nil
}
