"""Cryptographic erasure (docs/design.md section 9): every body stored in the cloud is sealed
under a data key of its own, which is kept only wrapped by its region's key-encryption key
(KEK). KEKs live outside PostgreSQL (:mod:`mdmbus.crypto.keyring`) and are rotated and
destroyed on a schedule (:mod:`mdmbus.services.rotation`), so a deleted row's copies in WAL,
heap pages and backups become unreadable within the rotation period."""
