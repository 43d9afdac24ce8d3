package yamlstrict

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

type testConfig struct {
	Name string `json:"name"`
	Size int    `json:"size,omitempty"`
}

func (c *testConfig) Validate() error {
	if c.Name == "" {
		return errors.New("name is required")
	}
	if c.Size == 0 {
		c.Size = 7
	}
	return nil
}

func TestLoadDecodesStrictlyValidatesAndNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := Load[testConfig](write("ok.yaml", "name: a\n"))
	if err != nil || c.Name != "a" || c.Size != 7 {
		t.Fatalf("Load = %+v, %v; want the default filled in", c, err)
	}
	for file, body := range map[string]string{"unknown.yaml": "name: a\nbogus: 1\n", "invalid.yaml": "size: 3\n"} {
		p := write(file, body)
		if c, err := Load[testConfig](p); err == nil || !strings.Contains(err.Error(), p) || c != (testConfig{}) {
			t.Errorf("Load(%s) = %+v, %v; want an error naming the file and no value", file, c, err)
		}
	}
	if _, err := Load[testConfig](filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v", err)
	}
}
