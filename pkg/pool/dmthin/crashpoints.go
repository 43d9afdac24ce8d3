package dmthin

// CrashPoints lists, per operation, the crash points (pkg/crashpoint) its steps mark, in the
// order they are reached. Each lies between two durable changes (a journal entry, a pool
// message, a table swap): a process killed there must, once the pool is opened again, have
// lost nothing acknowledged and kept nothing half done. Every point of an operation is
// reached on its successful path, whether or not there is anything to suspend or reload (a
// step with nothing to do is passed through).
var CrashPoints = map[string][]string{
	"create": {
		"create/after-intent", "create/after-message", "create/after-txid", "create/after-settle",
	},
	"snapshot": {
		"snapshot/after-intent", "snapshot/after-suspend", "snapshot/after-message", "snapshot/after-resume",
		"snapshot/after-txid", "snapshot/after-settle",
	},
	"clone": {
		"clone/after-intent", "clone/after-suspend", "clone/after-message", "clone/after-resume",
		"clone/after-txid", "clone/after-settle",
	},
	"delete": {
		"delete/after-deactivate", "delete/after-intent", "delete/after-message", "delete/after-txid",
		"delete/after-settle",
	},
	"expand": {
		"expand/after-intent", "expand/after-load", "expand/after-resume", "expand/after-settle",
	},
	"group": {
		"group/after-intent", "group/after-suspend", "group/after-first-message", "group/after-messages",
		"group/after-resume", "group/after-txid", "group/after-settle",
	},
}
