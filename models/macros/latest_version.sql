{#- The newest version of each row of `relation`: raw tables may hold a key more than once when a
    target appends, so staging keeps the row that sorts first by `order_by` within each `key`. -#}
{% macro latest_version(relation, key, order_by) %}
    select *
    from (
        select
            *,
            row_number() over (partition by {{ key }} order by {{ order_by }}) as _version_rank
        from {{ relation }}
    ) as ranked
    where _version_rank = 1
{% endmacro %}
