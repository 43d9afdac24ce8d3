package grpcserver

import (
	"strings"

	"github.com/kubernetes-csi/csi-lib-utils/protosanitizer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// stripped replaces a secret in a logged message, as protosanitizer does for CSI's.
const stripped = "***stripped***"

// loggable is msg as it may be logged: CSI secrets stripped by protosanitizer (fields marked
// csi_secret), and in any other message every string field whose name says it holds a secret
// (…key, …secret, …password, as the agent API's DH-HMAC-CHAP keys) replaced.
func loggable(msg any) any {
	m, ok := msg.(proto.Message)
	if !ok || !hasSecret(m.ProtoReflect()) {
		return protosanitizer.StripSecrets(msg)
	}
	c := proto.Clone(m)
	redact(c.ProtoReflect())
	return protosanitizer.StripSecrets(c)
}

func secretField(fd protoreflect.FieldDescriptor) bool {
	if fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
		return false
	}
	name := strings.ToLower(string(fd.Name()))
	return strings.HasSuffix(name, "key") || strings.Contains(name, "secret") || strings.Contains(name, "password")
}

func hasSecret(m protoreflect.Message) bool {
	found := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretField(fd):
			found = true
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			found = hasSecret(v.Message())
		}
		return !found
	})
	return found
}

func redact(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case secretField(fd):
			m.Set(fd, protoreflect.ValueOfString(stripped))
		case fd.Kind() == protoreflect.MessageKind && !fd.IsList() && !fd.IsMap():
			redact(v.Message())
		}
		return true
	})
}
