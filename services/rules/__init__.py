"""The privacy rules of docs/design.md section 2 as the stores apply them, one module a rule
(every enforcement point of every rule, in and out of this package, is listed in
``enforcement.py``):

- ``residency``: tenant -> region (rule 1)
- ``delete_after_download``: relay acknowledgements delete the cloud copy (rule 2)
- ``session_expiry``: temporary commands live until their session expires (rule 3)
- ``retention``: the 90 + 30 day lifecycle and deletion on request (rule 4)
- ``inventory_cache``: the cache goes when its device is un-enrolled
- ``audit``: every deletion counted by rule, region and category (rule 6)

Minimisation (rule 5) is the contract's: ``mdmbus.contract`` refuses records before they get here.
"""
