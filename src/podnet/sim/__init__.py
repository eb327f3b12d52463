"""Pure model of the Linux packet path, walking a packet over a snapshot of kernel state."""
