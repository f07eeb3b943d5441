"""`relay runs|generations|diff|ui|delete|gc`: the store's runs read back, compared and cleaned up.

Apart from ``run`` because these commands start nothing: they read what runs left (records, ledgers,
MLflow runs, Tune trials), say how each ended and its way on, and free space without breaking another
run's cache.
"""
