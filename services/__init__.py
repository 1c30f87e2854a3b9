"""The processes around the bus: region and CM stores, the rules that delete, the CM-side
connector, the sweeper and the simulators. Builds on the ``mdmbus`` core; never imports
``streams``."""
