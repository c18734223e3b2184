-- One row per product: the latest version synced. Prices become exact decimals.
with versions as (
    {{ latest_version(source('tap_files', 'products'), 'product_id', 'updated_at desc, _elt_synced_at desc') }}
)

select
    cast(product_id as {{ dbt.type_bigint() }}) as product_id,
    cast(name as {{ dbt.type_string() }}) as product_name,
    cast(category as {{ dbt.type_string() }}) as category,
    cast(price as decimal(18, 2)) as list_price,
    cast(updated_at as timestamp with time zone) as updated_at,
    cast(_elt_synced_at as timestamp with time zone) as synced_at
from versions
