"""The command line: `bench run`, `sweep`, `calibrate`, `probe`, `report`, `plot`, `compare`; the composition root."""
