"""Fleet emulator for e2e: local simulator workers for the worker pods of a real (kwok) cluster,
Prometheus file-based discovery, round-robin fronts, a load generator and a Prometheus server.

    python -m e2e.fleet --namespace NS --work-dir DIR --sd-file FILE
"""
