"""The data contract as package data: ``avro/*.avsc`` (current schemas) and
``avro/released/v<N>/`` (released versions). Installed as ``mdmbus.schemas`` and read through
``importlib.resources`` by :mod:`mdmbus.contract.registry`; there is no code here."""
