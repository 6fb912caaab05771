"""stream.settings: one typed Settings object from defaults, a TOML file, the environment
and explicit overrides; a wrong value stops start-up naming the setting and its source."""

from __future__ import annotations

import re

import pytest

from stream.settings import PREFIX, Settings, SettingsError, load_settings


def write_toml(tmp_path, text: str, name: str = "meterwatch.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


# -- defaults ---------------------------------------------------------------------------

def test_empty_environment_and_no_file_gives_the_declared_defaults():
    assert load_settings(env={}) == Settings()


def test_documented_defaults():
    s = load_settings(env={})
    assert s.broker == ""
    assert s.app_id == "meterwatch"
    assert s.topic_partitions == 4
    assert s.readings_topic == "ami.readings"
    assert s.store == "memory"
    assert s.timezone == "Asia/Shanghai"
    assert s.voltage_standard == "gbt12325"
    assert s.max_message_bytes == 4 * 1024 * 1024
    assert s.max_future_s == 300.0
    assert s.web_port == 6066
    assert s.log_level == "info"


def test_settings_are_frozen():
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.web_port = 1  # type: ignore[misc]


def test_kafka_url_joins_comma_separated_brokers_with_semicolons():
    s = load_settings(env={"METERWATCH_BROKER": "h1:9092,h2:9092"})
    assert s.kafka_url == "kafka://h1:9092;h2:9092"


def test_variables_without_the_prefix_are_ignored():
    s = load_settings(env={"PATH": "/usr/bin", "WEB_PORT": "not-a-port", "HOME": "/root"})
    assert s == Settings()


# -- environment, with type coercion ----------------------------------------------------

def test_env_var_overrides_a_string_setting():
    assert load_settings(env={"METERWATCH_BROKER": "kafka:9092"}).broker == "kafka:9092"


def test_env_var_for_an_int_setting_is_coerced_to_int():
    s = load_settings(env={"METERWATCH_WEB_PORT": "8080", "METERWATCH_TOPIC_PARTITIONS": "8"})
    assert s.web_port == 8080 and type(s.web_port) is int
    assert s.topic_partitions == 8 and type(s.topic_partitions) is int


def test_env_var_for_a_float_setting_is_coerced_to_float():
    s = load_settings(env={"METERWATCH_MAX_FUTURE_S": "12.5", "METERWATCH_REGISTRY_RELOAD_S": "7"})
    assert s.max_future_s == 12.5 and type(s.max_future_s) is float
    assert s.registry_reload_s == 7.0 and type(s.registry_reload_s) is float


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " True "])
def test_bool_env_var_accepts_the_usual_true_spellings(raw):
    assert load_settings(env={"METERWATCH_SMTP_STARTTLS": raw}).smtp_starttls is True


@pytest.mark.parametrize("raw", ["0", "false", "no", "Off"])
def test_bool_env_var_accepts_the_usual_false_spellings(raw):
    assert load_settings(env={"METERWATCH_COOKIE_SECURE": raw}).cookie_secure is False


def test_bool_in_toml_keeps_a_toml_boolean_as_is(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nsmtp_starttls = true\n")
    assert load_settings(env={}, config_file=p).smtp_starttls is True


def test_bool_env_var_rejects_other_words_naming_setting_and_source():
    with pytest.raises(SettingsError,
                       match=r"smtp_starttls \(environment METERWATCH_SMTP_STARTTLS\).*'maybe'"):
        load_settings(env={"METERWATCH_SMTP_STARTTLS": "maybe"})


def test_wrong_type_names_variable_value_and_expected_type():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_REGISTRY_RELOAD_S": "soon"})
    msg = str(e.value)
    assert "registry_reload_s (environment METERWATCH_REGISTRY_RELOAD_S) = 'soon'" in msg
    assert "`float`" in msg


def test_bound_violation_names_variable_and_the_bound_with_its_reason():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_SESSION_TIMEOUT_S": "5"})
    msg = str(e.value)
    assert "session_timeout_s (environment METERWATCH_SESSION_TIMEOUT_S) = '5'" in msg
    assert ">= 6.0" in msg and "group.min.session.timeout.ms" in msg


def test_an_integral_float_is_accepted_for_an_int_setting(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nweb_port = 8080.0\n")
    assert load_settings(env={}, config_file=p).web_port == 8080


@pytest.mark.parametrize("raw", ["inf", "nan", "-0.5"])
def test_a_price_must_be_finite_and_not_negative(raw):
    with pytest.raises(SettingsError, match="tariff_per_kwh.*finite number >= 0"):
        load_settings(env={"METERWATCH_TARIFF_PER_KWH": raw})


def test_a_wrong_secret_value_is_not_shown_in_the_error(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nsession_secret = 424242\n")
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=p)
    assert "session_secret" in str(e.value) and "424242" not in str(e.value)


def test_replace_returns_a_changed_copy():
    from stream.settings import replace

    s = load_settings(env={})
    assert replace(s, web_port=1).web_port == 1 and s.web_port == 6066


def test_a_boolean_is_not_accepted_for_an_int_setting(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nweb_port = true\n")
    with pytest.raises(SettingsError, match="web_port"):
        load_settings(env={}, config_file=p)


def test_meterwatch_config_env_var_is_not_taken_for_a_setting(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\napp_id = 'from-file'\n")
    s = load_settings(env={"METERWATCH_CONFIG": str(p)})
    assert s.app_id == "from-file"


# -- TOML file --------------------------------------------------------------------------

def test_toml_meterwatch_section_sets_values_with_their_toml_types(tmp_path):
    p = write_toml(tmp_path, """
[meterwatch]
broker = "b:9092"
web_port = 7000
max_future_s = 60
store = "rocksdb"
""")
    s = load_settings(env={}, config_file=p)
    assert s.broker == "b:9092"
    assert s.web_port == 7000
    assert s.max_future_s == 60.0 and type(s.max_future_s) is float
    assert s.store == "rocksdb"


def test_toml_other_sections_are_left_to_other_readers(tmp_path):
    p = write_toml(tmp_path, """
[meterwatch]
app_id = "x"

[habit]
min_days = 14
""")
    s = load_settings(env={}, config_file=p)
    assert s.app_id == "x"


def test_toml_without_meterwatch_section_reads_top_level_keys(tmp_path):
    p = write_toml(tmp_path, 'app_id = "top"\n[habit]\nmin_days = 3\n')
    assert load_settings(env={}, config_file=p).app_id == "top"


def test_explicit_config_file_argument_wins_over_meterwatch_config(tmp_path):
    a = write_toml(tmp_path, "[meterwatch]\napp_id = 'a'\n", "a.toml")
    b = write_toml(tmp_path, "[meterwatch]\napp_id = 'b'\n", "b.toml")
    s = load_settings(env={"METERWATCH_CONFIG": str(a)}, config_file=b)
    assert s.app_id == "b"


# -- precedence -------------------------------------------------------------------------

def test_precedence_defaults_then_toml_then_env_then_overrides(tmp_path):
    p = write_toml(tmp_path, """
[meterwatch]
app_id = "toml"
broker = "toml:1"
web_port = 7001
log_level = "debug"
""")
    env = {"METERWATCH_BROKER": "env:2", "METERWATCH_WEB_PORT": "7002"}
    s = load_settings(env=env, config_file=p, web_port=7003)
    assert s.store == "memory"  # default: nobody set it
    assert s.app_id == "toml"  # TOML beats default
    assert s.log_level == "debug"
    assert s.broker == "env:2"  # env beats TOML
    assert s.web_port == 7003  # override beats env


def test_override_of_none_means_not_given():
    s = load_settings(env={"METERWATCH_WEB_PORT": "7002"}, web_port=None)
    assert s.web_port == 7002


def test_overrides_are_type_checked_and_named_as_command_line():
    with pytest.raises(SettingsError, match=r"web_port \(command line\)"):
        load_settings(env={}, web_port=70000)


def test_unknown_override_is_an_error():
    with pytest.raises(SettingsError, match="web_prot"):
        load_settings(env={}, web_prot=1)


# -- wrong values: the message names the setting and its source ------------------------

def test_non_integer_port_names_setting_and_env_var():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_WEB_PORT": "http"})
    msg = str(e.value)
    assert "web_port" in msg and "METERWATCH_WEB_PORT" in msg and "'http'" in msg


def test_non_integer_port_in_toml_names_the_file(tmp_path):
    p = write_toml(tmp_path, '[meterwatch]\nweb_port = "eighty"\n')
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=p)
    assert "web_port" in str(e.value) and str(p) in str(e.value)


@pytest.mark.parametrize("port", ["-1", "65536", "100000"])
def test_port_out_of_range_names_setting_and_env_var(port):
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_WEB_PORT": port})
    msg = str(e.value)
    assert "web_port (environment METERWATCH_WEB_PORT)" in msg and "0-65535" in msg


@pytest.mark.parametrize("port", ["0", "65535"])
def test_port_range_bounds_are_inclusive(port):
    assert load_settings(env={"METERWATCH_WEB_PORT": port}).web_port == int(port)


def test_port_out_of_range_in_toml_names_the_file(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nweb_port = 70000\n")
    with pytest.raises(SettingsError, match=rf"web_port \(config file {re.escape(str(p))}\)"):
        load_settings(env={}, config_file=p)


@pytest.mark.parametrize("name,value,allowed", [
    ("store", "redis", "memory, rocksdb"),
    ("voltage_standard", "iec61000", "gbt12325, en50160, ansi_c84_1"),
    ("log_level", "verbose", "debug, info, warning, error"),
])
def test_unknown_choice_names_setting_env_var_and_allowed_values(name, value, allowed):
    var = PREFIX + name.upper()
    with pytest.raises(SettingsError) as e:
        load_settings(env={var: value})
    msg = str(e.value)
    assert f"{name} (environment {var})" in msg
    assert repr(value) in msg and allowed in msg


def test_choices_are_case_sensitive():
    with pytest.raises(SettingsError, match="log_level"):
        load_settings(env={"METERWATCH_LOG_LEVEL": "INFO"})


def test_unknown_choice_in_toml_names_the_file(tmp_path):
    p = write_toml(tmp_path, '[meterwatch]\nvoltage_standard = "nema"\n')
    with pytest.raises(SettingsError, match=rf"voltage_standard \(config file {re.escape(str(p))}\)"):
        load_settings(env={}, config_file=p)


@pytest.mark.parametrize("name,value", [
    ("topic_partitions", "0"), ("topic_partitions", "-3"),
    ("max_message_bytes", "0"), ("max_future_s", "-1.5"), ("registry_reload_s", "0"),
    ("late_tolerance_s", "-1"),
])
def test_positive_only_numbers_reject_zero_and_negative(name, value):
    var = PREFIX + name.upper()
    with pytest.raises(SettingsError) as e:
        load_settings(env={var: value})
    assert f"{name} (environment {var})" in str(e.value) and "> 0" in str(e.value)


def test_metrics_areas_max_zero_aggregates_every_area_but_negative_is_refused():
    assert load_settings(env={"METERWATCH_METRICS_AREAS_MAX": "0"}).metrics_areas_max == 0
    with pytest.raises(SettingsError, match=r"metrics_areas_max .* >= 0"):
        load_settings(env={"METERWATCH_METRICS_AREAS_MAX": "-1"})


def test_positive_only_number_rejects_nan():
    with pytest.raises(SettingsError, match="max_future_s"):
        load_settings(env={"METERWATCH_MAX_FUTURE_S": "nan"})


def test_fractional_toml_number_for_an_int_setting_is_an_error(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nweb_port = 8080.9\n")
    with pytest.raises(SettingsError, match="web_port"):
        load_settings(env={}, config_file=p)


def test_unknown_meterwatch_variable_is_an_error_naming_it():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_WEB_PROT": "8080"})
    msg = str(e.value)
    assert "METERWATCH_WEB_PROT" in msg
    assert "web_port" in msg  # the known names are listed to spot the typo


def test_unknown_key_in_toml_names_key_and_file(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nbrokr = 'x'\n")
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=p)
    assert "'brokr'" in str(e.value) and str(p) in str(e.value)


def test_missing_toml_file_names_the_path(tmp_path):
    p = tmp_path / "nope.toml"
    with pytest.raises(SettingsError, match=rf"{re.escape(str(p))}.*does not exist"):
        load_settings(env={}, config_file=p)


def test_missing_toml_file_from_meterwatch_config_names_the_path(tmp_path):
    p = tmp_path / "gone.toml"
    with pytest.raises(SettingsError, match=re.escape(str(p))):
        load_settings(env={"METERWATCH_CONFIG": str(p)})


def test_invalid_toml_names_the_file(tmp_path):
    p = write_toml(tmp_path, "[meterwatch\nbroker = \n")
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=p)
    assert str(p) in str(e.value)


def test_unknown_timezone_names_the_setting():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_TIMEZONE": "Mars/Olympus_Mons"})
    assert "timezone" in str(e.value) and "Mars/Olympus_Mons" in str(e.value)


def test_unknown_timezone_from_env_names_the_env_var():
    with pytest.raises(SettingsError, match="METERWATCH_TIMEZONE"):
        load_settings(env={"METERWATCH_TIMEZONE": "Mars/Olympus_Mons"})


def test_unknown_timezone_from_toml_names_the_file(tmp_path):
    p = write_toml(tmp_path, '[meterwatch]\ntimezone = "Mars/Olympus_Mons"\n')
    with pytest.raises(SettingsError, match=re.escape(str(p))):
        load_settings(env={}, config_file=p)


def test_known_timezone_is_accepted():
    assert load_settings(env={"METERWATCH_TIMEZONE": "Europe/Berlin"}).timezone == "Europe/Berlin"


def test_settings_error_is_a_value_error():
    assert issubclass(SettingsError, ValueError)


# -- secrets are never shown --------------------------------------------------------------

SECRET_ENV = {
    "METERWATCH_DB_URL": "postgresql+psycopg://mw:db-pass-4711@db:5432/alerts",
    "METERWATCH_ALERTMANAGER_URL": "http://ops:am-pass-0815@alertmanager:9093",
    "METERWATCH_CONTROL_ROOM_WEBHOOK": "https://chat.example/hook?token=tok-9c1e77&room=ops",
    "METERWATCH_SESSION_SECRET": "session-secret-" + "s" * 32,
    "METERWATCH_WEBHOOK_SECRET": "webhook-signing-key-77",
    "METERWATCH_SMTP_PASSWORD": "smtp-pass-5150",
}


@pytest.mark.parametrize("show", [repr, str, lambda s: f"{s}", lambda s: f"{s!r}"])
def test_repr_and_str_hide_passwords_tokens_and_secrets(show):
    s = load_settings(env=SECRET_ENV)
    text = show(s)
    for leaked in ("db-pass-4711", "am-pass-0815", "tok-9c1e77", "session-secret-",
                   "webhook-signing-key-77", "smtp-pass-5150"):
        assert leaked not in text, leaked
    # what is not a credential is still there to read
    assert "postgresql+psycopg://mw:***@db:5432/alerts" in text
    assert "http://ops:***@alertmanager:9093" in text
    assert "https://chat.example/hook?token=***&room=***" in text
    assert "session_secret='<redacted>'" in text and "smtp_password='<redacted>'" in text
    assert load_settings(env={}).__repr__().count("<redacted>") == 0  # unset: nothing to hide


def test_a_token_in_a_webhook_path_is_hidden_too():
    from stream.settings import redact_url

    url = "https://hooks.example/services/T0AB12/B0CD34/Zx81kq0PL2mn7YtR3vWq"
    assert redact_url(url) == "https://hooks.example/services/T0AB12/B0CD34/***"


def test_a_misspelt_secret_variable_is_named_with_the_close_match_but_its_value_never_shown():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"METERWATCH_SESION_SECRET": "hunter2-hunter2"})
    msg = str(e.value)
    assert "METERWATCH_SESION_SECRET" in msg
    assert "did you mean METERWATCH_SESSION_SECRET?" in msg
    assert "hunter2" not in msg


def test_a_misspelt_key_in_toml_suggests_the_close_match(tmp_path):
    p = write_toml(tmp_path, "[meterwatch]\nwebhook_secrt = 'k-123456'\n")
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=p)
    assert "did you mean webhook_secret?" in str(e.value) and "k-123456" not in str(e.value)
