package sink

// Ref says that document ID, built at Version, uses entity Key of joined
// source Source. A RefIndex records a ref (Add) before the joined entity is
// fetched, and the refs of a build (Commit, see Built) once its document is
// written; RefIndex says the contract every one keeps.
type Ref struct {
	ID, Source, Key string
	Version         int64
}

// Built is one written document and the refs it was built with (none for a
// tombstone).
type Built struct {
	ID      string
	Version int64
	Deleted bool
	Refs    []Ref
}
