"""What a VM reads at first boot: NoCloud and config-drive seed files, the ISO that carries them,
and the Windows answer file."""
