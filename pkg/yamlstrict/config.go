package yamlstrict

import (
	"fmt"
	"os"
)

// Validator is a configuration that checks itself (and may fill in defaults).
type Validator[T any] interface {
	*T
	Validate() error
}

// Decode decodes a configuration strictly and validates it.
func Decode[T any, P Validator[T]](raw []byte) (T, error) {
	var c, zero T
	if err := Unmarshal(raw, &c); err != nil {
		return zero, err
	}
	if err := P(&c).Validate(); err != nil {
		return zero, err
	}
	return c, nil
}

// Load reads a configuration file and decodes it with Decode; errors name the file.
func Load[T any, P Validator[T]](path string) (T, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		var zero T
		return zero, err
	}
	c, err := Decode[T, P](raw)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err) // c is the zero value
	}
	return c, nil
}
