#!/usr/bin/env bash
# Run a private Postfix instance on a loopback port as a stand-in for Microsoft 365's MX
# endpoint (<tenant>.mail.protection.outlook.com) behind a certificate-based inbound
# connector: STARTTLS required (TLS 1.2 or later), and relaying only for a client that
# presents a certificate from the test CA. Used by the relay backend's tests and by
# bench/relay.sh.
#
# Usage:
#   scripts/postfix-relay.sh start DIR PORT [--no-client-cert] [--relayhost HOST:PORT] [--no-tls]
#   scripts/postfix-relay.sh stop DIR
#   scripts/postfix-relay.sh install
#
#   start    writes the certificates (once; a restart keeps them) and the configuration,
#            starts Postfix, waits for its banner on 127.0.0.1:PORT and prints
#            "postfix relay ready on 127.0.0.1:PORT (DIR)". Postfix keeps running.
#            Starting a DIR whose instance runs already stops that instance first.
#     --no-client-cert   IP-based connector instead: 127.0.0.0/8 may relay without a
#                        certificate (mynetworks + permit_mynetworks). STARTTLS still required.
#     --relayhost H:P    relay everything to H:P (plain SMTP, no MX lookup) instead of
#                        delivering into DIR/maildir, tuned for throughput (see below).
#     --no-tls           STARTTLS offered but not required (smtpd_tls_security_level = may),
#                        for load generators that cannot do TLS (smtp-source); meant for
#                        the benchmark, with --no-client-cert.
#   stop     stops the instance; DIR stays for inspection. A DIR with nothing running is fine.
#   install  installs postfix with apt-get if /usr/sbin/postfix is missing.
#
# Exit status: 0 done; 1 failure; 2 usage; 3 Postfix is missing and cannot be installed
# (not root, no apt-get, or apt-get failed, e.g. no network): tests skip on 3.
# Starting Postfix needs root.
#
# DIR (created if missing; an absolute path made of [A-Za-z0-9._+/-], so that it can go
# into Postfix parameters as is):
#   ca.pem ca.key                 test CA (EC P-256): "mailgate test CA"
#   server.pem server.key         smtpd's certificate: CN localhost, SAN DNS:localhost, IP:127.0.0.1
#   client.pem client.key         client certificate, CN and SAN DNS relay.contoso.test,
#                                 signed by ca.pem: may relay
#   other-client.pem .key         client certificate, CN and SAN DNS relay.fabrikam.test, signed
#                                 by a different CA (other-ca.pem/.key): may not relay
#   conf/main.cf conf/master.cf   the instance's configuration (postconf -c DIR/conf -n)
#   queue/  data/                 queue_directory and data_directory
#   postfix.log                   the instance's log (maillog_file, through postlogd)
#   maildir/new/                  delivered messages (without --relayhost), see below
#
# Delivered messages. Without --relayhost every accepted message, whatever its recipient
# domain, goes to virtual(8), which writes one Maildir file per envelope recipient into
# DIR/maildir/new/. A file appears there complete: virtual writes it into maildir/tmp/
# and renames it. Its content is the message exactly as the client sent it (after SMTP
# dot-unstuffing, with LF line ends instead of CRLF) below four header lines Postfix
# prepends, in this order:
#   Return-Path: <envelope sender>
#   X-Original-To: <envelope recipient>
#   Delivered-To: <envelope recipient>
#   Received: from ... by mx.contoso.test (Postfix) with ESMTPS id ... for <recipient>; date
#             (several lines: it names the TLS version and cipher, and whether the client
#             presented a verified certificate)
# Postfix adds no other header and rewrites none (no missing Message-ID or Date added, no
# address rewriting: local_header_rewrite_clients is empty), and does no 8bit-to-7bit
# conversion. Files are named <seconds>.V<dev>I<inode>M<microseconds>.<hostname>; the
# newest is `ls -t DIR/maildir/new | head -n 1` (or the newest ModTime in Go). Delivery is
# asynchronous: after the 250 to DATA, poll until the file appears (well under a second
# here). Tests that want "only new mail" can move files they have read to DIR/maildir/cur/.
# The files belong to nobody (virtual(8) will not deliver as root).
#
# Every directory above DIR must be searchable (x) by the users postfix and nobody: Postfix
# daemons reach DIR/data and DIR/maildir by absolute path after dropping privileges. start
# adds o+x to those that are not (a t.TempDir() or mktemp -d is 0700), and says so.
#
# With --relayhost, tuned for throughput on a 2-core machine that also runs the load. Each
# choice was measured with bench/relay.sh (5000 messages over 20 sessions, 3 runs each,
# about ±8% run to run) against the alternative in brackets:
#   default_process_limit = 20          at most 20 cleanup, smtp, ... processes each: as many
#                                       as deliveries run at once; more only adds processes
#                                       to switch between on 2 cores [50: -3%, noise]
#   smtpd maxproc 100 (master.cf)       smtpd alone is not held to 20: one per load session
#   max_use = 10000                     a process serves 10000 requests before it is
#                                       replaced [100, the default: -20%]
#   default_destination_concurrency_limit = 20  parallel deliveries to the relay host
#   initial_destination_concurrency = 20        ... from the first message [10 and 10: -15%]
#   smtp_connection_cache_on_demand = yes       reuse connections to the relay host
#   smtp_connection_cache_destinations = relay host   ... always [no cache: -5%, noise]
#   in_flow_delay = 0                   smtpd is not slowed down when the queue fills
# and everywhere: smtpd_peername_lookup = no (no DNS lookup of 127.0.0.1).
set -euo pipefail

PROG=postfix-relay.sh
POSTFIX=/usr/sbin/postfix
POSTCONF=/usr/sbin/postconf
MAILBOX_USER=nobody # virtual(8) delivers as this user

die() { echo "$PROG: $*" >&2; exit 1; }
unavailable() { echo "$PROG: postfix unavailable: $*" >&2; exit 3; }
usage() {
  cat >&2 <<EOF
usage: $PROG start DIR PORT [--no-client-cert] [--relayhost HOST:PORT] [--no-tls]
       $PROG stop DIR
       $PROG install
EOF
  exit 2
}

# ------------------------------------------------------------------ install
install_postfix() {
  [[ -x $POSTFIX ]] && return 0
  [[ $(id -u) -eq 0 ]] || unavailable "$POSTFIX is missing and installing it needs root"
  command -v apt-get >/dev/null 2>&1 || unavailable "$POSTFIX is missing and there is no apt-get"
  echo "$PROG: installing postfix with apt-get" >&2
  local log was_running=0
  log=$(mktemp "${TMPDIR:-/tmp}/postfix-install.XXXXXX")
  "$POSTFIX" status >/dev/null 2>&1 && was_running=1
  # "No configuration": the package then writes no /etc/postfix/main.cf and does not start
  # the system instance; only private instances like ours run.
  if command -v debconf-set-selections >/dev/null 2>&1; then
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections || true
  fi
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y postfix >"$log" 2>&1; then
    if ! { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postfix; } >>"$log" 2>&1; then
      tail -n 5 "$log" >&2
      unavailable "apt-get could not install postfix (no network?); log: $log"
    fi
  fi
  rm -f "$log"
  [[ -x $POSTFIX ]] || unavailable "apt-get ran but $POSTFIX is still missing"
  # Should the package have started the system instance after all, stop it again.
  if ((!was_running)) && "$POSTFIX" status >/dev/null 2>&1; then
    "$POSTFIX" stop >/dev/null 2>&1 || true
  fi
}

# ------------------------------------------------------------------ certificates
# new_key FILE: an EC P-256 private key, readable by its owner only.
new_key() {
  (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1")
}

# new_ca NAME CN: NAME.key and NAME.pem, a self-signed CA.
new_ca() {
  new_key "$dir/$1.key"
  openssl req -x509 -new -key "$dir/$1.key" -out "$dir/$1.pem" -days 3650 -subj "/CN=$2" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
}

# new_leaf NAME CA CN SAN EKU: NAME.key and NAME.pem, signed by CA.pem/CA.key.
new_leaf() {
  local name=$1 ca=$2 cn=$3 san=$4 eku=$5
  new_key "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "/CN=$cn" -out "$dir/$name.csr"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/$ca.pem" -CAkey "$dir/$ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -out "$dir/$name.pem" \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=$eku" \
      "subjectAltName=$san" "authorityKeyIdentifier=keyid")
  rm -f "$dir/$name.csr"
}

make_certs() {
  local f missing=0
  for f in ca.pem ca.key server.pem server.key client.pem client.key other-client.pem other-client.key; do
    [[ -s $dir/$f ]] || missing=1
  done
  ((missing)) || return 0
  {
    new_ca ca "mailgate test CA"
    new_leaf server ca localhost "DNS:localhost,IP:127.0.0.1" serverAuth
    new_leaf client ca relay.contoso.test "DNS:relay.contoso.test" clientAuth
    new_ca other-ca "fabrikam test CA"
    new_leaf other-client other-ca relay.fabrikam.test "DNS:relay.fabrikam.test" clientAuth
  } >"$dir/openssl.log" 2>&1 || { cat "$dir/openssl.log" >&2; die "openssl could not make the certificates"; }
  rm -f "$dir/openssl.log"
}

# ------------------------------------------------------------------ helpers
# instance_running: the master of DIR's instance is alive.
instance_running() {
  [[ -f $dir/conf/main.cf ]] && "$POSTFIX" -c "$dir/conf" status >/dev/null 2>&1
}

# banner: connect to 127.0.0.1:PORT and succeed if the server greets with 220.
banner() {
  local line=""
  { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  IFS= read -r -t 2 line <&3 || true
  printf 'QUIT\r\n' >&3 2>/dev/null || true
  exec 3<&- 3>&-
  [[ $line == 220* ]]
}

check_dir() {
  [[ $dir =~ ^/[A-Za-z0-9._+/-]+$ ]] ||
    die "DIR must be a path made of [A-Za-z0-9._+/-] (it goes into Postfix parameters): '$dir'"
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# make_searchable USER DIR: Postfix daemons reach DIR/data (as postfix) and DIR/maildir
# (virtual(8), as nobody) by absolute path after dropping root privileges, so every
# directory above them must be searchable (x) by that user. Adds o+x where it is not.
make_searchable() {
  local user=$1 path=$2 d="" part parts
  runuser -u "$user" -- test -x "$path" 2>/dev/null && return 0
  IFS=/ read -r -a parts <<<"${path#/}"
  for part in "${parts[@]}"; do # top down: the first one user cannot enter is the one to fix
    d+=/$part
    if ! runuser -u "$user" -- test -x "$d" 2>/dev/null; then
      chmod o+x "$d"
      echo "$PROG: note: added o+x to $d so that $user can reach $path" >&2
    fi
  done
  runuser -u "$user" -- test -x "$path" 2>/dev/null ||
    die "$user cannot reach $path (a directory above it is not searchable)"
}

# ------------------------------------------------------------------ start
start() {
  local client_cert=1 relayhost="" tls=encrypt
  while (($#)); do
    case $1 in
      --no-client-cert) client_cert=0 ;;
      --relayhost)
        (($# >= 2)) || usage
        relayhost=$2
        shift
        ;;
      --relayhost=*) relayhost=${1#*=} ;;
      --no-tls) tls=may ;;
      *) usage ;;
    esac
    shift
  done
  if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
    die "PORT must be a TCP port number, not '$port'"
  fi
  local relay_host="" relay_port=""
  if [[ -n $relayhost ]]; then
    [[ $relayhost =~ ^([A-Za-z0-9._-]+):([1-9][0-9]{0,4})$ ]] ||
      die "--relayhost must be HOST:PORT, not '$relayhost'"
    relay_host=${BASH_REMATCH[1]} relay_port=${BASH_REMATCH[2]}
  fi

  install_postfix
  [[ $(id -u) -eq 0 ]] || unavailable "starting a Postfix instance needs root"
  command -v openssl >/dev/null 2>&1 || die "openssl is missing"
  id -u "$MAILBOX_USER" >/dev/null 2>&1 || die "there is no user $MAILBOX_USER"

  [[ $dir == /* ]] || dir=$PWD/$dir
  check_dir # before it is created
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd -P)
  check_dir # symbolic links resolved

  if instance_running; then
    echo "$PROG: an instance runs in $dir already; stopping it first" >&2
    stop_instance
  fi
  ! port_taken "$port" || die "127.0.0.1:$port is already in use"

  make_certs
  mkdir -p "$dir/conf" "$dir/queue" "$dir/data"
  chown postfix "$dir/data"
  make_searchable postfix "$dir/data"
  if [[ -z $relayhost ]]; then
    mkdir -p "$dir/maildir"/{tmp,new,cur}
    chown -R "$MAILBOX_USER:$(id -gn "$MAILBOX_USER")" "$dir/maildir"
    chmod 755 "$dir/maildir" "$dir/maildir"/{tmp,new,cur}
    make_searchable "$MAILBOX_USER" "$dir/maildir"
  fi

  local smtpd_maxproc=- # default_process_limit
  [[ -z $relayhost ]] || smtpd_maxproc=100 # more than any load: not limited with the others
  # master.cf: one smtpd on 127.0.0.1:PORT and the internal services, nothing chrooted
  # (Debian's default chroot would need copies of /etc files), no pickup (no local
  # submission), postlog for maillog_file.
  cat >"$dir/conf/master.cf" <<EOF
# Written by scripts/postfix-relay.sh; rewritten on every start.
# service type  private unpriv  chroot  wakeup  maxproc command + args
127.0.0.1:$port inet n   -       n       -       $smtpd_maxproc       smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

  local restrictions
  if ((client_cert)); then
    # Relay only for a client certificate that verifies against ca.pem (and nothing else:
    # no system CAs, tls_append_default_CA = no). Anyone else: 554 5.7.1 Relay access denied.
    restrictions="permit_tls_all_clientcerts, reject_unauth_destination"
  else
    restrictions="permit_mynetworks, reject_unauth_destination"
  fi

  # A fresh main.cf: nothing is inherited from /etc/postfix/main.cf.
  cat >"$dir/conf/main.cf" <<EOF
# Written by scripts/postfix-relay.sh; rewritten on every start.
compatibility_level = 3.6
EOF
  local settings=(
    "queue_directory = $dir/queue"
    "data_directory = $dir/data"
    "maillog_file = $dir/postfix.log"
    "maillog_file_prefixes = $dir"
    "myhostname = mx.contoso.test"
    "mydomain = contoso.test"
    "mydestination ="
    "relay_domains ="
    "inet_interfaces = 127.0.0.1"
    "inet_protocols = ipv4"
    "alias_maps ="
    "alias_database ="
    "biff = no"
    "smtputf8_enable = yes"
    "message_size_limit = 36700160"
    "smtpd_peername_lookup = no"
    # Keep the message as the client sent it: no rewriting, no added headers.
    "local_header_rewrite_clients ="
    "disable_mime_output_conversion = yes"
    # TLS as Microsoft's connector: STARTTLS (required unless --no-tls), TLS 1.2+.
    "smtpd_tls_security_level = $tls"
    "smtpd_tls_cert_file = $dir/server.pem"
    "smtpd_tls_key_file = $dir/server.key"
    "smtpd_tls_protocols = >=TLSv1.2"
    "smtpd_tls_mandatory_protocols = >=TLSv1.2"
    "smtpd_tls_loglevel = 1"
    "smtpd_tls_received_header = yes"
    "smtpd_relay_restrictions = $restrictions"
  )
  if ((client_cert)); then
    settings+=(
      "smtpd_tls_ask_ccert = yes"
      "smtpd_tls_CAfile = $dir/ca.pem"
      "tls_append_default_CA = no"
    )
  else
    settings+=("mynetworks = 127.0.0.0/8")
  fi
  if [[ -n $relayhost ]]; then
    settings+=(
      "relayhost = [$relay_host]:$relay_port"
      "smtp_tls_security_level = none"
      "default_process_limit = 20"
      "max_use = 10000"
      "default_destination_concurrency_limit = 20"
      "initial_destination_concurrency = 20"
      "smtp_connection_cache_on_demand = yes"
      "smtp_connection_cache_destinations = [$relay_host]:$relay_port"
      "in_flow_delay = 0"
    )
  else
    local uid gid
    uid=$(id -u "$MAILBOX_USER") gid=$(id -g "$MAILBOX_USER")
    settings+=(
      # Every recipient is a relay recipient (so reject_unauth_destination applies), and
      # the default transport delivers them all into one Maildir.
      # (virtual_mailbox_domains must be empty: its default, $virtual_mailbox_maps, would
      # make every domain a local one, and reject_unauth_destination would pass them all.)
      "default_transport = virtual"
      "virtual_mailbox_domains ="
      "virtual_mailbox_base = $dir"
      "virtual_mailbox_maps = static:maildir/"
      "virtual_uid_maps = static:$uid"
      "virtual_gid_maps = static:$gid"
      "virtual_mailbox_limit = 0"
    )
  fi
  "$POSTCONF" -c "$dir/conf" -e "${settings[@]}"
  # Postfix programs wait (in 0.3 s steps, 2-3 s in all for postfix start) until a
  # configuration file is older than a second, in case it is still being edited. These
  # are complete: date them back.
  touch -d "@$(($(date +%s) - 2))" "$dir/conf/main.cf" "$dir/conf/master.cf"

  local out
  if ! out=$("$POSTFIX" -c "$dir/conf" start 2>&1); then
    [[ -z $out ]] || echo "$out" >&2
    tail -n 20 "$dir/postfix.log" >&2 2>/dev/null || true
    die "postfix did not start (config: $dir/conf, log: $dir/postfix.log)"
  fi

  local ready=0
  for _ in {1..100}; do # up to ~10 s
    if banner; then ready=1 && break; fi
    sleep 0.1
  done
  if ((!ready)); then
    tail -n 20 "$dir/postfix.log" >&2 2>/dev/null || true
    die "no SMTP banner on 127.0.0.1:$port after 10 s (log: $dir/postfix.log)"
  fi
  echo "postfix relay ready on 127.0.0.1:$port ($dir)"
}

# ------------------------------------------------------------------ stop
# stop_instance: stop DIR's running instance and wait until its master has gone.
stop_instance() {
  "$POSTFIX" -c "$dir/conf" stop >/dev/null 2>&1 || true
  for _ in {1..100}; do # postfix stop can return before the master has gone
    instance_running || return 0
    sleep 0.1
  done
  "$POSTFIX" -c "$dir/conf" abort >/dev/null 2>&1 || true
  for _ in {1..30}; do
    instance_running || return 0
    sleep 0.1
  done
  die "postfix in $dir did not stop"
}

stop() {
  [[ -d $dir ]] || die "no such directory: $dir"
  dir=$(cd "$dir" && pwd -P)
  if ! instance_running; then
    echo "postfix relay not running ($dir)"
    return 0
  fi
  stop_instance
  echo "postfix relay stopped ($dir)"
}

# ------------------------------------------------------------------ main
(($# >= 1)) || usage
cmd=$1
shift
case $cmd in
  start)
    (($# >= 2)) || usage
    dir=$1 port=$2
    shift 2
    start "$@"
    ;;
  stop)
    (($# == 1)) || usage
    dir=$1
    stop
    ;;
  install)
    (($# == 0)) || usage
    install_postfix
    echo "postfix is installed: $("$POSTCONF" -h mail_version 2>/dev/null || echo "$POSTFIX")"
    ;;
  *) usage ;;
esac
