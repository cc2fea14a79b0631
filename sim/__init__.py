"""simpy models of FUSE daemons, worker pools, locks and cancellation. Never imports vfslab.impl."""
