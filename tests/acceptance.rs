//! Acceptance tests against a real Kafka-protocol broker, ported from Python
//! kafkaesk's acceptance suite. Start a broker with `scripts/broker.sh`; the
//! tests read its address from `KAFKA` (default `127.0.0.1:9092`). Each module
//! is named for the behaviour it proves and uses its own topic prefix.

mod application_lifecycle;
mod assigned_partitions_are_read_at_once;
mod broker_lists_offsets_inside_batches;
mod broker_supports_transactions;
mod consume_one_then_many;
mod data_binding_with_injected_parameters;
mod dead_letter_replay_follows_only_kafkaesk_headers;
mod error_policies_retry_skip_dead_letter;
mod exactly_once_output_survives_sigkill;
mod expected_offset_admits_one_writer;
mod group_with_waiting_messages;
mod handler_error_does_not_commit;
mod handler_takes_record_or_raw_bytes;
mod handler_timeout_covers_the_whole_handler;
mod hostile_input;
mod idempotent_producer_recovers_from_a_timed_out_send;
mod key_order_holds_across_rebalances;
mod key_order_holds_under_concurrency_and_retries;
mod keys_land_where_java_and_python_put_them;
mod logging_does_not_ship_its_own_events;
mod logging_flush_on_finalize;
mod logging_follows_worker_flags;
mod logging_queue_full_drops_without_blocking;
mod logging_resumes_when_broker_returns;
mod logging_ships_typed_fields;
mod malformed_payloads_skipped_as_unhandled;
mod metrics_and_health_served_over_http;
mod no_record_starts_after_a_stop;
mod non_matching_topic_not_delivered;
mod parallel_handlers_use_every_worker_thread;
mod pause_and_resume_keep_partitions_and_order;
mod queued_messages_fail_loudly_when_the_producer_closes;
mod quickstart_macros_and_registry;
mod reader_reads_streams_back;
mod reliability_broker_outage;
mod reliability_rebalance;
mod reliability_slow_handler;
mod retention_set_on_created_topic;
mod sasl_end_to_end;
mod schema_contracts_on_the_bus;
mod secrets_never_shown;
mod slow_messages_cancelled_by_timeout;
mod stop_during_startup_ends_the_run;
mod stop_with_the_broker_gone_is_bounded;
mod stream_admin_and_metadata;
mod subscribe_before_topic_exists;
mod subscription_start_positions;
mod subscriptions_without_a_group_see_every_message;
mod tls_end_to_end;
mod transactions_publish_all_or_nothing;
mod two_groups_two_schema_versions;
mod unregistered_type_and_raw_publish;
mod validation_rejects_invalid_data;
