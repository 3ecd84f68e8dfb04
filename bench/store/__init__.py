"""The versioned on-disk run format: manifest, request and chunk records, their writer and readers."""
