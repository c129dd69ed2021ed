"""Training helpers shared by stage 1 and stage 2: devices, seeded random draws on any
device, rows in host or device memory, samplers, mixed precision, the epoch loop, worker
pools and stratified splits. Imports only :mod:`dlsa.config` and :mod:`dlsa.errors`."""
