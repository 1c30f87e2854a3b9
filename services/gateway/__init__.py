"""The tenants' door (docs/design.md section 6): one HTTPS gateway per region. A tenant's
systems (its CM connector, its administrators) call it with a bearer token; the token's tenant
is the only tenant they can act for."""
