"""The rule table: every rule's id, finding kind, severity and probes, indexed by trigger
word; and the text normalisations the probes read.

Part of :mod:`grace.governance.analyzers` (its docstring states the invariants).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import MappingProxyType
from typing import Final

from grace.governance.analyzers._model import FindingKind
from grace.governance.analyzers._probes import (
    _AUTH_TARGETS,
    _DISK,
    _DRIVE,
    _K8S_WIDE,
    _OFF,
    _PIPE,
    _SEG,
    _SQL_SP,
    _admin_group,
    _assignment,
    _aws_key_id,
    _aws_secret,
    _bearer,
    _cmd,
    _command_start,
    _compile_exec,
    _decodes_to_interpreter,
    _encoded_command,
    _exfiltrates,
    _find_delete,
    _git_force_push_protected,
    _lit,
    _lo,
    _near,
    _path_word,
    _pem,
    _pipes_to_interpreter,
    _Probe,
    _raw,
    _recursive_on_critical,
    _remote_copy,
    _removes_drive,
    _Rule,
    _run_by_shell,
    _sh,
    _short_flags,
    _socket_shell,
    _ssh_forwards,
    _token,
    _touches_ledger,
    _url_credentials,
    _when,
)
from grace.governance.constitution import Severity

# --------------------------------------------------------------------------------------
# The rules: a table (hand-aligned; one probe or two per line).

_D = FindingKind.DESTRUCTIVE_COMMAND
_S = FindingKind.SECRET_EXPOSURE
_P = FindingKind.PRIVILEGE_ESCALATION
_O = FindingKind.CODE_OBFUSCATION
_X = FindingKind.DATA_EXFILTRATION
_N = FindingKind.UNAUTHORIZED_NETWORK
_M = FindingKind.SELF_MODIFICATION
_A = FindingKind.DISABLES_AUDIT
_W = FindingKind.MALWARE
_I = FindingKind.ANALYSIS_INCOMPLETE
_MEDIUM, _HIGH, _CRITICAL = Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL


def _rule(rule_id: str, kind: FindingKind, severity: Severity, *probes: _Probe) -> _Rule:
    return _Rule(rule_id, kind, severity, probes)


def _has(*words: str) -> Callable[[list[str]], bool]:
    """All of ``words`` are among the command's words."""
    return lambda args: all(w in args for w in words)


_EVAL = r"\s*\(\s*(?:[rbfu]{0,2}[\"'`]|[\w.\[\]]+\s*[)(\[.,+%])"  # eval(<code, not prose>
_ASSIGN = r"[\"']?\s*[:=]\s*[\"']?([^\s\"',;&{}()\[\]<>]{1,200})"  # key = <value>
_DECODE_NEAR = _near(
    r"(?<![\w.])(?:eval|exec|function)\s*\(|\biex\b|invoke-expression|subprocess|os\.system"
    r"|popen",
    200,
    200,
)
_REMOTE_SCRIPT = (
    _cmd("curl", r"\s" + _PIPE, _pipes_to_interpreter),
    _cmd("wget", r"\s" + _PIPE, _pipes_to_interpreter),
    _sh(r"<\s*\(\s*(?:curl|wget)\s", "curl wget"),
    _sh(r"\$\(\s*(?:curl|wget)\s", "curl wget", _run_by_shell),
    *(
        _cmd(c, r"\s" + _PIPE, _pipes_to_interpreter)
        for c in ("iwr", "irm", "invoke-webrequest", "invoke-restmethod")
    ),
    _lo(r"downloadstring\s*\(", "downloadstring", _near(r"\biex\b|invoke-expression", 200, 200)),
)
_NET_HEADS = (
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "telnet",
    "ftp",
    "sftp",
    "scp",
    "rsync",
    "ssh",
    "openssl",
    "iwr",
    "irm",
)
_PASTE_SITES = (
    ("pastebin.com", "pastebin"),
    ("paste.ee", "paste"),
    ("hastebin", "hastebin"),
    ("ghostbin", "ghostbin"),
    ("termbin.com", "termbin"),
    ("transfer.sh", "transfer"),
    ("0x0.st", "0x0"),
    ("webhook.site", "webhook"),
    ("requestbin", "requestbin"),
    ("pipedream.net", "pipedream"),
    (".oast.", "oast"),
    ("interact.sh", "interact"),
    ("burpcollaborator.net", "burpcollaborator"),
    ("dnslog.cn", "dnslog"),
    ("requestcatcher.com", "requestcatcher"),
)
_METADATA = (
    ("169.254.169.254", "169"),
    ("169.254.170.2", "170"),
    ("fd00:ec2::254", "fd00"),
    ("metadata.google.internal", "metadata"),
    ("100.100.100.200", "200"),
    ("2852039166", "2852039166"),
    ("0xa9fea9fe", "0xa9fea9fe"),
)
_TUNNEL_SITES = (
    ("ngrok.io", "ngrok"),
    ("ngrok-free.app", "ngrok"),
    ("serveo.net", "serveo"),
    ("trycloudflare.com", "trycloudflare"),
)
_MINERS = (
    "xmrig",
    "minerd",
    "cpuminer",
    "cgminer",
    "bfgminer",
    "ethminer",
    "nbminer",
    "phoenixminer",
    "coinhive",
    "cryptonight",
)
_POOLS = ("nicehash.com", "minexmr.com", "supportxmr.com", "hashvault.pro")
_OFFENSIVE = (
    "mimikatz",
    "meterpreter",
    "msfvenom",
    "msfconsole",
    "cobaltstrike",
    "lazagne",
    "rubeus",
)
_DISABLE = "disable disables disabled disabling"
_END = r"(?![a-z0-9])"  # a word ends
_DISABL = _lit("disabl") + r"(?:e|es|ed|ing)"

# fmt: off
_RULES: Final[tuple[_Rule, ...]] = (
    # ---- destructive commands ------------------------------------------------------
    _rule("destructive.rm_recursive_root", _D, _CRITICAL,
          _cmd("rm", check=_when(_recursive_on_critical))),
    _rule("destructive.find_delete_root", _D, _HIGH, _cmd("find", check=_when(_find_delete))),
    _rule("destructive.disk_format", _D, _CRITICAL,
          _cmd("mkfs", r"(?:\.\w+)?\s+\S" + _SEG), _cmd("mke2fs", r"\s+\S" + _SEG),
          _cmd("wipefs", check=_when(lambda a: "-a" in a or "--all" in a)),
          _cmd("format", r"\s+[a-z]:(?:\s|$|/)"),
          _cmd("diskpart", r"\b" + _SEG, _when(_has("clean")))),
    _rule("destructive.disk_overwrite", _D, _CRITICAL,
          _cmd("dd", check=_when(lambda a: any(x.startswith("of=") and _DISK.match(x[3:])
                                                for x in a))),
          _sh(r">\s*/dev/(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|disk\d)", "dev"),
          _cmd("shred", check=_when(lambda a: any(_DISK.match(x) for x in a)))),
    _rule("destructive.sql_drop", _D, _CRITICAL,
          _cmd("drop", _SQL_SP + r"(?:database|table|schema|keyspace|collection)\b"),
          _cmd("dropdb", r"\s+\S" + _SEG), _lo(r"\.dropdatabase\s*\(", "dropdatabase")),
    _rule("destructive.sql_truncate", _D, _HIGH,
          _cmd("truncate", _SQL_SP + r"(?:table" + _SQL_SP + r"\S|[\w.]+\s*;)")),
    _rule("destructive.sql_delete_all", _D, _HIGH, *(
          _raw(f"{d}{_SQL_SP}{f}{_SQL_SP}" r"[\w.\"`\[\]]+(?:\s*;|\s*$|"
               f"{_SQL_SP}{w}{_SQL_SP}" r"(?:1\s*=\s*1|true|TRUE|'1'\s*=\s*'1')\s*(?:;|$))",
               "delete", flags=re.M)
          for d, f, w in (("DELETE", "FROM", "WHERE"), ("delete", "from", "where")))),
    _rule("destructive.git_reset_hard", _D, _HIGH,
          _cmd("git", check=_when(_has("reset", "--hard")))),
    _rule("destructive.git_force_push", _D, _HIGH,
          _cmd("git", check=_when(_git_force_push_protected))),
    _rule("destructive.power_off", _D, _HIGH,
          _cmd("shutdown", r"\s+(?:-[a-z]+|now\b|\+?\d+\b|/[srpf]\b)"),
          _cmd("systemctl", r"\s+(?:reboot|halt|poweroff|kexec)\b"),
          _cmd("sudo", r"\s+(?:-\S+\s+)*(?:reboot|halt|poweroff|init\s+[06])\b"),
          _sh(r"[;&|]\s*(?:reboot|halt|poweroff)\b", "reboot halt poweroff"),
          _sh(r"(?:reboot|halt|poweroff)\s+(?:-[a-z-]+|now)\b", "reboot halt poweroff"),
          _cmd("init", r"\s+[06]\s*(?:$|[;&|)])"),
          _lo(r"(?:stop|restart)-computer\b", "computer")),
    _rule("destructive.fork_bomb", _D, _CRITICAL, _raw(r"\(\s*\)\s*\{\s*([\w:.]+)\s*\|\s*\1\s*&")),
    _rule("destructive.recursive_permissions_root", _D, _HIGH,
          *(_cmd(c, check=_when(_recursive_on_critical)) for c in ("chmod", "chown", "chgrp"))),
    _rule("destructive.kubernetes_delete", _D, _HIGH,
          *(_cmd(c, check=_when(lambda a: "delete" in a and not _K8S_WIDE.isdisjoint(a)))
            for c in ("kubectl", "oc"))),
    _rule("destructive.infrastructure_destroy", _D, _HIGH,
          *(_cmd(c, check=_when(lambda a: "destroy" in a or "-destroy" in a))
            for c in ("terraform", "tofu")),
          _cmd("pulumi", r"\s+destroy\b"),
          _cmd("aws", r"\s+s3\s+(?:rm|rb)\s" + _SEG,
               _when(lambda a: "--recursive" in a or "--force" in a)),
          _cmd("gsutil", check=_when(lambda a: "rm" in a and "r" in _short_flags(a))),
          _cmd("gcloud", r"\s+projects\s+delete\b"), _cmd("az", r"\s+group\s+delete\b")),
    _rule("destructive.windows_wipe", _D, _CRITICAL,
          *(_cmd(c, check=_when(lambda a: any(_DRIVE.fullmatch(x) for x in a[1:])))
            for c in ("rd", "rmdir", "del")),
          _cmd("remove-item", check=_when(_removes_drive))),
    # ---- secrets ------------------------------------------------------------------------
    _rule("secret.private_key", _S, _CRITICAL,
          _lo(r"-----\s*begin\s+(?:[a-z0-9]+\s+){0,3}private\s+key(?:\s+block)?\s*-----",
              "private", _pem),
          _lo(r"putty-user-key-file-\d+:", "putty", _pem)),
    _rule("secret.aws_access_key", _S, _CRITICAL,
          _raw(r"A[KS]IA[A-Z2-7]{16}(?![A-Za-z0-9])", check=_aws_key_id)),
    _rule("secret.aws_secret_key", _S, _CRITICAL,
          _lo(r"aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?([a-z0-9/+]{40})"
              r"(?![a-z0-9/+])", "aws", _aws_secret)),
    _rule("secret.github_token", _S, _CRITICAL,
          _raw(r"gh[pousr]_[A-Za-z0-9]{36,}", "ghp gho ghu ghs ghr", _token(4)),
          _raw(r"github_pat_[A-Za-z0-9_]{22,}", "github", _token(11))),
    _rule("secret.slack_token", _S, _CRITICAL,
          _raw(r"xox[baprse]-[A-Za-z0-9-]{10,}", "xoxb xoxa xoxp xoxr xoxs xoxe", _token(5)),
          _raw(r"hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]{8,}",
               "hooks", _token(26))),
    _rule("secret.google_api_key", _S, _CRITICAL,
          _raw(r"AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])", check=_token(4, glued="_-"))),
    _rule("secret.stripe_key", _S, _CRITICAL,
          _raw(r"[sr]k_live_[0-9A-Za-z]{16,}", "sk rk", _token(8))),
    _rule("secret.vendor_token", _S, _CRITICAL,
          _raw(r"glpat-[A-Za-z0-9_-]{20,}", "glpat", _token(6)),
          _raw(r"npm_[A-Za-z0-9]{36}", "npm", _token(4)),
          _raw(r"hf_[A-Za-z]{30,}", "hf", _token(3)),
          _raw(r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}", "sk", _token(3, glued="-_")),
          _raw(r"pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}", "pypi", _token(5)),
          _raw(r"shpat_[a-fA-F0-9]{32}", "shpat", _token(6))),
    _rule("secret.jwt", _S, _HIGH,
          _raw(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*", check=_token(4))),
    _rule("secret.bearer_credential", _S, _HIGH,
          _lo(r"authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|token|bot|digest)\s+"
              r"([a-z0-9._~+/=-]{8,})", "authorization", _bearer),
          _lo(_lit("bearer") + r"\s+([a-z0-9._~+/-]{20,}=*)", "bearer", _bearer)),
    _rule("secret.credential_assignment", _S, _HIGH, *(
          _lo(_lit(word, "a-z0-9") + _ASSIGN, trigger, _assignment)
          for word, trigger in (("password", "password"), ("passwd", "passwd"),
                                ("passphrase", "passphrase"), ("secret", "secret"),
                                ("api_key", "api"), ("api-key", "api"), ("apikey", "apikey"),
                                ("token", "token"), ("private_key", "private")))),
    _rule("secret.connection_string", _S, _CRITICAL,
          _raw(r"://([^\s:/@\"'<>]{0,128}):([^\s/@\"'<>]{1,256})@(?=[\w.\[-])",
               check=_url_credentials)),
    _rule("secret.named_field", _S, _HIGH),  # structural: a password/token/api_key field
    # ---- privilege escalation -------------------------------------------------------
    _rule("privilege.sudo", _P, _HIGH,
          *(_cmd(c, r"\s+\S" + _SEG, _command_start) for c in ("sudo", "doas", "pkexec")),
          _cmd("runas", r"\s+/user:" + _SEG, _command_start)),
    _rule("privilege.switch_user", _P, _HIGH,
          _cmd("su", r"(?:\s+-[a-z]?(?=\s|$)|\s+--login\b|\s+root\b)", _command_start)),
    _rule("privilege.setuid", _P, _HIGH,
          _cmd("chmod", r"\s+(?:-\S+\s+)*(?:[ugoa]*[+=][rwxt]*s|0?[2467][0-7]{3}\b)"),
          _lo(r"set(?:e|re|res)?[ug]id\s*\(\s*0\s*[,)]",
              "setuid seteuid setreuid setresuid setgid setegid setregid setresgid"),
          _cmd("setcap", check=_when(lambda a: any("cap_setuid" in x or "cap_sys_admin" in x
                                                    for x in a)))),
    _rule("privilege.chown_root", _P, _MEDIUM,
          _cmd("chown", r"\s+(?:-\S+\s+)*root(?::\w*)?(?:\s|$)")),
    _rule("privilege.admin_group", _P, _HIGH,
          _cmd("usermod", check=_when(_admin_group)),
          _cmd("gpasswd", r"\s+-a\s+\S+\s+(?:sudo|wheel|admin|docker)\b"),
          _cmd("adduser", r"\s+\S+\s+(?:sudo|wheel|admin)\b"),
          _cmd("useradd", check=_when(lambda a: "-o" in a or "--non-unique" in a)),
          _lo(r"net\s+localgroup\s+administrators\s+\S+\s+/add\b", "localgroup")),
    _rule("privilege.sudoers", _P, _CRITICAL,
          _sh(r"/etc/sudoers", "sudoers"), _cmd("nopasswd", r"\s*:")),
    _rule("privilege.credential_store", _P, _HIGH, _sh(r"/etc/g?shadow\b", "shadow gshadow")),
    _rule("privilege.container_escape", _P, _HIGH,
          _sh(r"--privileged\b", "privileged"), _sh(r"--pid[=\s]+host\b", "pid"),
          _sh(r"--cap-add[=\s]+(?:all|sys_admin|sys_ptrace|sys_module)\b", "cap"),
          _cmd("nsenter", check=_when(lambda a: "1" in a and ("-t" in a or "--target" in a))),
          _sh(r"/var/run/docker\.sock", "sock")),
    _rule("privilege.auth_bypass", _P, _HIGH,
          *(_lo(_lit(verb) + r"\s+(?:the\s+|all\s+|any\s+)?" + _AUTH_TARGETS, verb)
            for verb in ("bypass", "bypassing", "circumvent", "evade")),
          _lo(_DISABL + r"\s+(?:the\s+|all\s+)?(?:authentication|authorization|auth"
              r"|access\s+controls?|permission\s+checks?|rbac|security\s+checks?)\b", _DISABLE),
          _lo(_lit("turn") + r"(?:ing|s)?\s+off\s+(?:the\s+)?(?:authentication|authorization"
              r"|auth|access\s+controls?|permission\s+checks?)\b", "turn turning turns"),
          _lo(_lit("skip") + r"[_-](?:auth|authentication|authorization|permission_checks?)\b",
              "skip")),
    _rule("privilege.cluster_admin", _P, _HIGH,
          _sh(r"--clusterrole[=\s]+cluster-admin\b", "clusterrole")),
    _rule("privilege.security_disable", _P, _HIGH,
          _cmd("setenforce", r"\s+(?:0|permissive)\b"), _sh(r"selinux=disabled", "selinux"),
          _cmd("aa-teardown", r"(?:\s|$)")),
    _rule("privilege.authorized_keys", _P, _HIGH, _sh(r"authorized_keys2?\b", "authorized")),
    # ---- obfuscation --------------------------------------------------------------------
    _rule("obfuscation.dynamic_eval", _O, _HIGH,
          *(_lo(_lit(name, r"\w.$") + _EVAL, name) for name in ("eval", "exec", "execfile")),
          _lo(r"\|\s*iex\b", "iex"), _lo(_lit("iex") + r"\s*[($]", "iex"),
          _lo(_lit("invoke-expression") + r"\b", "invoke"),
          _lo(_lit("new") + r"\s+function\s*\(", "function")),
    _rule("obfuscation.compile_exec", _O, _HIGH,
          _lo(_lit("compile", r"\w.") + r"\s*\([^)\n]{0,2000}", "compile", _compile_exec)),
    _rule("obfuscation.dynamic_import", _O, _HIGH,
          _lo(r"__import__\s*\(", "import"),
          _lo(r"importlib\.import_module\s*\(\s*(?![\"'][\w.]+[\"']\s*[,)])", "importlib"),
          _lo(r"getattr\s*\(\s*__builtins__", "builtins"), _lo(r"__builtins__\s*\[", "builtins")),
    _rule("obfuscation.decode_and_run", _O, _CRITICAL,
          _cmd("base64", r"\s" + _PIPE, _decodes_to_interpreter),
          _cmd("xxd", r"\s" + _PIPE, _decodes_to_interpreter),
          *(_lo(name + r"\s*\(", name, _DECODE_NEAR)
            for name in ("b64decode", "decodebytes", "atob", "frombase64string"))),
    _rule("obfuscation.powershell_encoded", _O, _CRITICAL,
          *(_cmd(c, check=_when(_encoded_command))
            for c in ("powershell", "powershell.exe", "pwsh"))),
    _rule("obfuscation.char_codes", _O, _MEDIUM,
          _raw(r"\\x[0-9a-fA-F]{2}(?:\\x[0-9a-fA-F]{2}){3,}"),
          _raw(r"\\u00[0-9a-fA-F]{2}(?:\\u00[0-9a-fA-F]{2}){3,}"),
          _raw(r"\\[0-3][0-7]{2}(?:\\[0-3][0-7]{2}){3,}"),
          _lo(r"fromcharcode\s*\(\s*\d+\s*,", "fromcharcode"),
          _lo(_lit("chr") + r"\s*\(\s*\d+\s*\)\s*[+.]\s*chr\s*\(\s*\d+\s*\)\s*[+.]\s*chr\s*\(",
              "chr")),
    _rule("obfuscation.remote_script_exec", _O, _CRITICAL, *_REMOTE_SCRIPT),
    _rule("obfuscation.encoded_payload", _O, _HIGH),  # the decoders: encoding hides a finding
    # ---- exfiltration -------------------------------------------------------------------
    _rule("exfiltration.sensitive_transfer", _X, _CRITICAL,
          *(_cmd(tool, r"(?:\s" + _PIPE + r"|$)", _exfiltrates) for tool in _NET_HEADS)),
    _rule("exfiltration.reverse_shell", _X, _CRITICAL,
          _sh(r"/dev/(?:tcp|udp)/", "tcp udp"),
          *(_cmd(c, check=_socket_shell) for c in ("nc", "ncat", "netcat")),
          _cmd("socat", check=_when(lambda a: any(x.startswith(("exec:", "system:")) for x in a))),
          _cmd("mkfifo", r"\s", _near(r"\b(?:nc|ncat|netcat|telnet|openssl)\b", 0, 300)),
          _lo(r"dup2\s*\(", "dup2", _near(r"socket", 400, 400)),
          _lo(r"pty\.spawn\s*\(", "pty"),
          _lo(r"fsockopen\s*\(", "fsockopen",
              _near(r"exec|system|passthru|popen|/bin/sh", 0, 300))),
    _rule("exfiltration.remote_copy", _X, _MEDIUM,
          _cmd("scp", check=_when(_remote_copy)), _cmd("rsync", check=_when(_remote_copy))),
    _rule("exfiltration.paste_service", _X, _HIGH,
          *(_lo(re.escape(site) + r"\b", trigger) for site, trigger in _PASTE_SITES)),
    _rule("exfiltration.dns_tunnel", _X, _HIGH,
          *(_lo(_lit(c) + r"\s" + _SEG, c, _near(r"\$\(|\$\{|`|\$\w+\.", 0, 0))
            for c in ("dig", "nslookup", "host", "drill")),
          _lo(_lit("dnscat") + r"2?" + _END, "dnscat dnscat2"),
          _lo(_lit("iodine") + r"\s", "iodine")),
    # ---- network ------------------------------------------------------------------------
    _rule("network.remote_script_exec", _N, _HIGH, *_REMOTE_SCRIPT),
    _rule("network.cloud_metadata", _N, _CRITICAL,
          *(_lo(re.escape(address), trigger) for address, trigger in _METADATA)),
    _rule("network.port_scan", _N, _MEDIUM,
          *(_cmd(c, r"\s+\S" + _SEG) for c in ("nmap", "masscan", "zmap", "rustscan"))),
    _rule("network.tunnel", _N, _HIGH,
          _cmd("ssh", check=_when(_ssh_forwards)), _cmd("autossh", check=_when(_ssh_forwards)),
          _cmd("ngrok", r"\s+(?:http|tcp|tls|start)\b"),
          _cmd("chisel", r"\s+(?:client|server)\b"), _cmd("cloudflared", r"\s+tunnel\b"),
          _cmd("socat", check=_when(lambda a: any(x.startswith(("tcp-listen:", "tcp4-listen:"))
                                                  for x in a))),
          *(_lo(re.escape(site), trigger) for site, trigger in _TUNNEL_SITES)),
    _rule("network.firewall_disable", _N, _HIGH,
          _cmd("iptables", check=_when(lambda a: "-f" in a or "--flush" in a
                                       or ("-p" in a and "accept" in a))),
          _cmd("ufw", r"\s+disable\b"), _cmd("nft", r"\s+flush\s+ruleset\b"),
          _cmd("systemctl", r"\s+(?:stop|disable|mask)\s+(?:firewalld|ufw|iptables|nftables)\b"),
          _cmd("netsh", check=_when(lambda a: ("state" in a and "off" in a) or "disable" in a)),
          _lo(r"set-netfirewallprofile\b[^\n;|]{0,200}-enabled\s+\$?false", "netfirewallprofile")),
    _rule("network.listener", _N, _MEDIUM,
          *(_cmd(c, check=_when(lambda a: "l" in _short_flags(a[1:]) or "--listen" in a))
            for c in ("nc", "ncat", "netcat")),
          _lo(r"http\.server\b", "server"), _lo(r"simplehttpserver\b", "simplehttpserver")),
    # ---- self-modification and the audit ledger -----------------------------------------
    _rule("self_modification.governance_target", _M, _HIGH,
          _lo(r"\.cedar(?:schema)?\b", "cedar cedarschema", _path_word),
          _lo(r"grace\.toml\b", "grace", _path_word),
          _lo(r"grace[./]governance\b", "grace", _path_word),
          _lo(r"governance/(?:policies|constitution)", "governance", _path_word),
          _lo(r"ledger\.(?:db|key)\b", "ledger", _path_word),
          _lo(r"grace_governance__\w+", "grace")),
    _rule("self_modification.disable_verification", _M, _HIGH,
          _lo(_DISABL + r"[_\s-]?(?:the\s+)?(?:verification|governance(?:[_\s-]gate)?"
              r"|signature[_\s-]?checks?|immune(?:[_\s-]system)?)\b", _DISABLE),
          _lo(_lit("skip") + r"[_-](?:verification|verify|governance|signature[_-]?checks?)\b",
              "skip"),
          _lo(_lit("no", r"\w.") + r"-verify\b", "verify"),
          _lo(_lit("bypass") + r"[_\s-](?:the\s+)?(?:governance|verification)\b", "bypass"),
          *(_lo(_lit(name) + _OFF, trigger)
            for name, trigger in (("verification", "verification"), ("verify_signatures", "verify"),
                                  ("verification_enabled", "verification"),
                                  ("governance", "governance"),
                                  ("governance_enabled", "governance"),
                                  ("enable_governance_gate", "governance"),
                                  ("enable_avn_immune", "avn"))),
          *(_lo(_lit(name) + r"[\"']?\s*[:=]\s*[\"']?(?:off|log)\b", trigger)
            for name, trigger in (("enforcement_mode", "enforcement"),
                                  ("governance_mode", "governance")))),
    _rule("self_modification.disable_audit", _A, _CRITICAL,
          _lo(_DISABL + r"[_\s-]?(?:the\s+)?(?:audit(?:ing|[_\s-]log|[_\s-]trail)?|ledger)\b",
              _DISABLE),
          _lo(_lit("skip") + r"[_-]audit(?:ing)?\b", "skip"),
          _lo(_lit("no") + r"[_-]audit\b", "audit"),
          _lo(_lit("bypass") + r"[_\s-](?:the\s+)?(?:audit|ledger)\b", "bypass"),
          *(_lo(_lit(name) + _OFF, trigger)
            for name, trigger in (("audit", "audit"), ("audit_enabled", "audit"),
                                  ("audit_log", "audit"), ("auditing", "auditing"),
                                  ("ledger_enabled", "ledger"))),
          *(_cmd(c, check=_when(_touches_ledger)) for c in ("rm", "shred", "truncate", "unlink",
                                                             "mv")),
          _sh(r">\s*[^\s>]*ledger\.db", "ledger")),
    # ---- malware ------------------------------------------------------------------------
    _rule("malware.cryptominer", _W, _CRITICAL,
          *(_lo(_lit(name) + _END, name) for name in _MINERS),
          _lo(r"stratum2?\+(?:tcp|ssl|tls)://", "stratum stratum2"),
          *(_lo(re.escape(pool), pool.split(".", 1)[0]) for pool in _POOLS)),
    _rule("malware.offensive_tooling", _W, _HIGH,
          *(_lo(_lit(name) + _END, name) for name in _OFFENSIVE),
          _lo(r"cobalt\s+strike\b", "cobalt"), _lo(r"sekurlsa::", "sekurlsa")),
    _rule("malware.ransomware", _W, _CRITICAL,
          _cmd("vssadmin", r"(?:\.exe)?\s" + _SEG, _when(_has("delete", "shadows"))),
          _cmd("wmic", check=_when(_has("shadowcopy", "delete"))),
          _cmd("bcdedit", check=_when(_has("recoveryenabled", "no"))),
          _cmd("wbadmin", r"\s+delete\s+(?:catalog|systemstatebackup)\b"),
          _lo(r"your\s+(?:important\s+)?files\s+(?:have\s+been|are|were)\s+encrypted",
              "encrypted")),
    _rule("malware.keylogger", _W, _MEDIUM,
          _lo(_lit("keylogger") + r"s?" + _END, "keylogger keyloggers"),
          _lo(r"wh_keyboard_ll\b", "keyboard"),
          _lo(r"pynput\.keyboard\.listener", "pynput")),
    # ---- what could not be inspected ----------------------------------------------------
    _rule("incomplete.too_large", _I, _HIGH),
    _rule("incomplete.too_deep", _I, _HIGH),
    _rule("incomplete.too_many_values", _I, _HIGH),
    _rule("incomplete.unsupported_type", _I, _HIGH),
)
# fmt: on

_RULE_INDEX: Final = MappingProxyType({rule.id: i for i, rule in enumerate(_RULES)})
RULE_IDS: Final = frozenset(_RULE_INDEX)
"""Every rule id a finding can carry."""


def _index() -> tuple[dict[str, tuple[int, ...]], tuple[int, ...], tuple[tuple[int, _Probe], ...]]:
    """Probes by trigger word, the always-run probes, and every probe with its rule."""
    probes = tuple((r, p) for r, rule in enumerate(_RULES) for p in rule.probes)
    by_word: dict[str, list[int]] = {}
    for i, (_rule, probe) in enumerate(probes):
        for word in probe.words:
            if not word.isalnum() or word != word.lower():
                raise ValueError(f"trigger word {word!r} must be lowercase letters and digits")
            by_word.setdefault(word, []).append(i)
    always = tuple(i for i, (_rule, probe) in enumerate(probes) if not probe.words)
    return {w: tuple(ix) for w, ix in by_word.items()}, always, probes


_BY_WORD, _ALWAYS, _PROBES = _index()
_TRIGGER_WORDS: Final = frozenset(_BY_WORD)
_WORDS_TABLE: Final = {c: " " for c in range(128) if not chr(c).isalnum()} | {
    ord(q): None for q in "'\"`\\"
}
_SHELL_QUOTES: Final = str.maketrans("", "", "'\"`")
_BACKSLASH = re.compile(r"\\(?:\n|([ntr])|(.))", re.S)
_SHELL_NOISE = re.compile(r"\$\{ifs\}|\$ifs\b|\$[@*0-9]|\$\(\)")


def _unescape(m: re.Match[str]) -> str:
    return " " if m.group(1) else (m.group(2) or "")


def _lower(text: str) -> str:
    """Lowercase that keeps every offset (``İ``, alone in Unicode, lowercases to two chars)."""
    return (text.replace("\u0130", "I") if "\u0130" in text else text).lower()


def _shellish(low: str) -> str:
    """Lowercased text as a shell reads the words: quotes, escapes and IFS tricks gone."""
    if not any(c in low for c in "'\"`\\$"):
        return low
    s = low.translate(_SHELL_QUOTES)
    if "\\" in s:
        s = _BACKSLASH.sub(_unescape, s)
    if "$" in s:
        s = _SHELL_NOISE.sub(lambda m: " " if "ifs" in m.group(0) else "", s)
    return s
