"""Data files shipped with cryostream (see t20s_1pma.npz in cryostream.simulate.t20s)."""
