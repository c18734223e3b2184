-- One row per customer: the latest version synced, with explicit types and names.
with versions as (
    {{ latest_version(source('tap_files', 'customers'), 'customer_id', 'updated_at desc, _elt_synced_at desc') }}
)

select
    cast(customer_id as {{ dbt.type_bigint() }}) as customer_id,
    cast(first_name as {{ dbt.type_string() }}) as first_name,
    cast(last_name as {{ dbt.type_string() }}) as last_name,
    cast(lower(trim(email)) as {{ dbt.type_string() }}) as email,
    cast(upper(country) as {{ dbt.type_string() }}) as country_code,
    cast(created_at as timestamp with time zone) as created_at,
    cast(updated_at as timestamp with time zone) as updated_at,
    cast(_elt_synced_at as timestamp with time zone) as synced_at
from versions
