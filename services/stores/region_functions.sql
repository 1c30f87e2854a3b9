-- The functions through which services change records they hold no UPDATE on (docs/identities.md,
-- mdmbus/identities.py pg_functions). Applied after region_schema.sql, as the tables' owner, so
-- each runs with the owner's rights (SECURITY DEFINER) and a search_path no caller can change:
-- every name below is schema-qualified besides. Each can only delete data, or turn a pending
-- relay record into its tombstone; none writes a body or moves a deadline later. EXECUTE is
-- revoked from PUBLIC here and granted per role by provisioning.

-- Delete after download (rule 2): the named records of p_tenant that are relay records still
-- pending for CM lose their data (body, its wrapped data key, device, session; without the key,
-- every copy of the body left in WAL, heap pages or backups is unreadable once the KEK that
-- wrapped it is destroyed; the deadline goes with the data: the
-- tombstone holds only the tenant and the id, until the tenant's purge). An id of an upload, a
-- command, an inventory cache entry, a tombstone or another tenant's record changes nothing.
-- Rows are locked in record_id order, as every multi-row writer of records locks them.
CREATE OR REPLACE FUNCTION public.acknowledge_relay(p_tenant uuid, p_record_ids uuid[])
    RETURNS SETOF uuid
    LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE public.records r
       SET body = NULL, wrapped_key = NULL, kek_id = NULL, device_id = NULL,
           session_id = NULL, deadline = NULL, deadline_rule = NULL
      FROM (SELECT d.tenant_id, d.record_id FROM public.records d
             WHERE d.tenant_id = p_tenant AND d.record_id = ANY (p_record_ids)
               AND d.category = 'relay' AND d.has_body
             ORDER BY d.record_id FOR UPDATE) doomed
     WHERE r.tenant_id = doomed.tenant_id AND r.record_id = doomed.record_id
       AND r.category = 'relay' AND r.has_body
    RETURNING r.record_id
$$;
REVOKE ALL ON FUNCTION public.acknowledge_relay(uuid, uuid[]) FROM PUBLIC;

-- A retention purge's or a deletion request's batch: up to p_limit rows of p_tenant deleted,
-- by primary key from the tenant index; returns what each row was (a tombstone holds no data).
CREATE OR REPLACE FUNCTION public.purge_tenant_records(p_tenant uuid, p_limit integer)
    RETURNS TABLE (record_id uuid, category text, tombstone boolean)
    LANGUAGE sql VOLATILE STRICT SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM public.records r
     WHERE r.tenant_id = p_tenant AND r.record_id = ANY (ARRAY(
           SELECT s.record_id FROM public.records s WHERE s.tenant_id = p_tenant
            LIMIT greatest(p_limit, 0)))
    RETURNING r.record_id, r.category, NOT r.has_body
$$;
REVOKE ALL ON FUNCTION public.purge_tenant_records(uuid, integer) FROM PUBLIC;
