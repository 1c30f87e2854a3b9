"""The Configuration Manager side: a tenant's on-premises connector, which talks to the cloud
only through its region's gateway, with its tenant's token."""
