//go:build vm

package nvme

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"testing"
)

// dhchapSecret returns a random DH-HMAC-CHAP secret in its transport form: "DHHC-1:00:" +
// base64(32-byte key + its CRC-32, little endian) + ":" (NVMe base spec 8.13.5.8).
func dhchapSecret(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32, 36)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	key = binary.LittleEndian.AppendUint32(key, crc32.ChecksumIEEE(key))
	return "DHHC-1:00:" + base64.StdEncoding.EncodeToString(key) + ":"
}
