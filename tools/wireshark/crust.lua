-- crust.lua - Wireshark/tshark dissector for the crust p2p wire format (version 2)
--
--   wireshark -X lua_script:tools/wireshark/crust.lua
--   tshark -X lua_script:tools/wireshark/crust.lua -r capture.pcapng -Y crust
--
-- Every TCP frame is [u32 BE length L][L bytes of record]; frames are
-- reassembled across TCP segments (tcp_dissect_pdus). Records:
--
--   "CRST" v=2 type=1  msg1 I->R (48): flags, 8-byte network tag, ephemeral X25519 key
--   "CRST" v=2 type=2  msg2 R->I (154): flags, ephemeral key, 114-byte AEAD payload
--   "CRST" v=2 type=3  msg3 I->R (122): flags, 114-byte AEAD payload
--   0x10               secure record: ciphertext | 16-byte tag (opaque here)
--   "CRTR" 0x20        tracer record: u64 BE counter | messages (u32 BE len | bytes)*
--                      (no messages = keepalive)
--   "CRST" v=1 type=1  the older 52-byte hello (version 1), decoded for convenience
--
-- Which streams are crust: a heuristic (the first record of a stream starts
-- with "CRST" or "CRTR"; then the whole TCP conversation is crust, so the
-- secure 0x10 records that follow are found too), and the TCP port in the
-- preference crust.port (default 5483; 0 = none). See tools/wireshark/README.md.

local crust = Proto("crust", "crust p2p protocol")

local TYPE_NAMES = {
	[1] = "Handshake msg1",
	[2] = "Handshake msg2",
	[3] = "Handshake msg3",
	[0x10] = "Encrypted record",
	[0x20] = "Tracer data",
}

local HS_LEN = { [1] = 48, [2] = 154, [3] = 122 }
local HS_V1_HELLO_LEN = 52
local AEAD_PAYLOAD_LEN = 114 -- 32 identity key + 64 signature + 2 port + 16 tag
local TAG_LEN = 16
local DEFAULT_PORT = 5483

local f = {
	len = ProtoField.uint32("crust.len", "Record length", base.DEC),
	magic = ProtoField.string("crust.magic", "Magic"),
	version = ProtoField.uint8("crust.version", "Version", base.DEC),
	type = ProtoField.uint8("crust.type", "Type", base.HEX, TYPE_NAMES),
	flags = ProtoField.uint16("crust.flags", "Flags", base.HEX),
	flag_tracer = ProtoField.bool("crust.flags.tracer", "Tracer mode", 16, nil, 0x0001),
	flag_aes = ProtoField.bool("crust.flags.aes", "AES-256-GCM", 16, nil, 0x0002),
	flag_rsvd = ProtoField.uint16("crust.flags.reserved", "Reserved", base.HEX, nil, 0xfffc),
	network = ProtoField.bytes("crust.network", "Network tag"),
	ephemeral = ProtoField.bytes("crust.ephemeral", "Ephemeral X25519 public key"),
	encrypted = ProtoField.bytes("crust.encrypted", "Encrypted payload"),
	encrypted_len = ProtoField.uint32("crust.encrypted.len", "Encrypted payload length", base.DEC),
	tag = ProtoField.bytes("crust.tag", "AEAD tag"),
	counter = ProtoField.uint64("crust.counter", "Record counter", base.DEC),
	msg_count = ProtoField.uint32("crust.msg.count", "Messages", base.DEC),
	keepalive = ProtoField.bool("crust.keepalive", "Keepalive"),
	msg = ProtoField.none("crust.msg", "Message"),
	msg_len = ProtoField.uint32("crust.msg.len", "Length", base.DEC),
	msg_data = ProtoField.bytes("crust.msg.data", "Data"),
	msg_text = ProtoField.string("crust.msg.text", "Text"),
	peer = ProtoField.bytes("crust.peer", "Peer id"),
	listen_port = ProtoField.uint16("crust.listen_port", "Listen port", base.DEC),
	pad = ProtoField.bytes("crust.pad", "Padding"),
	body = ProtoField.bytes("crust.body", "Record body"),
}
crust.fields = f

local ef = {
	malformed = ProtoExpert.new("crust.malformed", "Malformed crust record",
		expert.group.MALFORMED, expert.severity.ERROR),
	bad_len = ProtoExpert.new("crust.bad_len", "Unexpected handshake length",
		expert.group.MALFORMED, expert.severity.WARN),
	unknown = ProtoExpert.new("crust.unknown", "Unknown crust record",
		expert.group.UNDECODED, expert.severity.WARN),
}
crust.experts = { ef.malformed, ef.bad_len, ef.unknown }

crust.prefs.port = Pref.uint("TCP port", DEFAULT_PORT,
	"TCP port decoded as crust (0 = none; the heuristic finds crust on any port)")

-- ---------------------------------------------------------------------------

local function plural(n, one, many)
	return tostring(n) .. " " .. (n == 1 and one or many)
end

local function printable(s)
	return #s > 0 and not s:find("[^\t\n\r\32-\126]")
end

local function preview(s, max)
	if #s > max then
		s = s:sub(1, max) .. "..."
	end
	return (s:gsub("[\t\n\r]", { ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r" }))
end

local function add_flags(tree, range)
	local v = range:uint()
	local names = {}
	if bit.band(v, 1) ~= 0 then names[#names + 1] = "tracer" end
	if bit.band(v, 2) ~= 0 then names[#names + 1] = "aes" end
	local ft = tree:add(f.flags, range)
	ft:append_text(" (" .. (#names > 0 and table.concat(names, ", ") or "none") .. ")")
	ft:add(f.flag_tracer, range)
	ft:add(f.flag_aes, range)
	ft:add(f.flag_rsvd, range)
	return #names > 0 and table.concat(names, ",") or nil
end

-- "CRST" records. rec = the record (after the length), returns the Info text.
local function dissect_handshake(rec, pinfo, tree)
	local n = rec:len()
	tree:add(f.magic, rec(0, 4))
	if n < 6 then
		tree:add_proto_expert_info(ef.malformed, "handshake record too short")
		return "Handshake (truncated)"
	end
	local version = rec(4, 1):uint()
	local typ = rec(5, 1):uint()
	tree:add(f.version, rec(4, 1))
	tree:add(f.type, rec(5, 1))

	if version == 1 and typ == 1 then
		-- version 1 hello: magic | 1 | 1 | flags(2) | network(8) | peer id(32) | port(2) | pad(2)
		local name = "Hello (v1)"
		tree:append_text(", " .. name)
		if n ~= HS_V1_HELLO_LEN then
			tree:add_proto_expert_info(ef.bad_len,
				string.format("v1 hello is %d bytes, expected %d", n, HS_V1_HELLO_LEN))
		end
		if n >= 8 then add_flags(tree, rec(6, 2)) end
		if n >= 16 then tree:add(f.network, rec(8, 8)) end
		if n >= 48 then tree:add(f.peer, rec(16, 32)) end
		if n >= 50 then tree:add(f.listen_port, rec(48, 2)) end
		if n >= 52 then tree:add(f.pad, rec(50, 2)) end
		return name
	end

	local name = TYPE_NAMES[typ]
	if not HS_LEN[typ] then
		tree:add_proto_expert_info(ef.unknown,
			string.format("unknown handshake type %d (version %d)", typ, version))
		if n > 6 then tree:add(f.body, rec(6)) end
		return string.format("Handshake, unknown type %d", typ)
	end
	if version ~= 2 then
		tree:add_proto_expert_info(ef.unknown, string.format("unknown version %d", version))
	end
	tree:append_text(", " .. name)
	if n ~= HS_LEN[typ] then
		tree:add_proto_expert_info(ef.bad_len,
			string.format("%s is %d bytes, expected %d", name, n, HS_LEN[typ]))
	end

	local flagtxt
	if n >= 8 then flagtxt = add_flags(tree, rec(6, 2)) end
	local off = 8
	local function take(field, len)
		if n - off <= 0 then return end
		local l = math.min(len, n - off)
		local item = tree:add(field, rec(off, l))
		off = off + l
		return item, l
	end
	if typ == 1 then
		take(f.network, 8)
		take(f.ephemeral, 32)
	else
		if typ == 2 then take(f.ephemeral, 32) end
		local _, l = take(f.encrypted, AEAD_PAYLOAD_LEN)
		if l then
			tree:add(f.encrypted_len, l):set_generated()
		end
	end
	if n > off then
		tree:add(f.body, rec(off)):append_text(" (trailing)")
	end
	if flagtxt then name = name .. " [" .. flagtxt .. "]" end
	return name
end

-- "CRTR" 0x20 records
local function dissect_tracer(rec, pinfo, tree)
	local n = rec:len()
	tree:add(f.magic, rec(0, 4))
	if n < 13 then
		if n >= 5 then tree:add(f.type, rec(4, 1)) end
		tree:add_proto_expert_info(ef.malformed,
			string.format("tracer record is %d bytes, at least 13 expected", n))
		return "Tracer data (truncated)"
	end
	tree:add(f.type, rec(4, 1))
	if rec(4, 1):uint() ~= 0x20 then
		tree:add_proto_expert_info(ef.unknown,
			string.format("unknown tracer record type 0x%02x", rec(4, 1):uint()))
	end
	local counter = rec(5, 8):uint64()
	tree:add(f.counter, rec(5, 8))
	tree:append_text(", Tracer data #" .. tostring(counter))

	local off = 13
	local count = 0
	local bad = false
	while off < n do
		if n - off < 4 then
			tree:add(f.body, rec(off)):append_text(" (truncated message length)")
			tree:add_proto_expert_info(ef.malformed, "truncated message length")
			bad = true
			break
		end
		local mlen = rec(off, 4):uint()
		if mlen > n - off - 4 then
			local mt = tree:add(f.msg, rec(off))
			mt:set_text(string.format("Message %d: %d bytes, only %d present", count + 1, mlen,
				n - off - 4))
			mt:add(f.msg_len, rec(off, 4))
			if n - off > 4 then mt:add(f.msg_data, rec(off + 4)) end
			mt:add_proto_expert_info(ef.malformed, "message runs past the end of the record")
			bad = true
			break
		end
		count = count + 1
		local mt = tree:add(f.msg, rec(off, 4 + mlen))
		mt:add(f.msg_len, rec(off, 4))
		local label = string.format("Message %d: %d bytes", count, mlen)
		if mlen > 0 then
			local data = rec(off + 4, mlen)
			local di = mt:add(f.msg_data, data)
			local s = data:raw()
			if printable(s) then
				local p = preview(s, 200)
				label = label .. ': "' .. p .. '"'
				di:set_text('Data: "' .. p .. '"')
				mt:add(f.msg_text, data)
			end
		else
			label = label .. " (empty)"
		end
		mt:set_text(label)
		off = off + 4 + mlen
	end

	tree:add(f.msg_count, count):set_generated()
	local info = "Tracer data #" .. tostring(counter) .. ", "
	if count == 0 and not bad then
		tree:add(f.keepalive, true):set_generated()
		info = info .. "keepalive"
	else
		info = info .. plural(count, "message", "messages")
	end
	if bad then info = info .. " [malformed]" end
	return info
end

-- 0x10 records: ciphertext | tag, opaque
local function dissect_secure(rec, pinfo, tree)
	local n = rec:len()
	tree:add(f.type, rec(0, 1))
	tree:append_text(", Encrypted record")
	if n < 1 + TAG_LEN then
		tree:add_proto_expert_info(ef.malformed,
			string.format("encrypted record is %d bytes, at least %d expected", n, 1 + TAG_LEN))
		if n > 1 then tree:add(f.encrypted, rec(1)) end
		return string.format("Encrypted record, %d bytes [malformed]", n - 1)
	end
	tree:add(f.encrypted_len, n - 1):set_generated()
	if n > 1 + TAG_LEN then
		tree:add(f.encrypted, rec(1, n - 1 - TAG_LEN))
	end
	tree:add(f.tag, rec(n - TAG_LEN, TAG_LEN))
	return string.format("Encrypted record, %d bytes", n - 1)
end

-- Info column: one entry per PDU of the TCP segment, "; "-separated.
local pdus_in_frame = 0

local function dissect_pdu(tvb, pinfo, tree)
	local total = tvb:len()
	local rlen = tvb(0, 4):uint()
	local item = tree:add(crust, tvb())
	item:add(f.len, tvb(0, 4))

	local info, rec
	if rlen > 0 then rec = tvb(4, total - 4):tvb() end
	if rlen == 0 then
		item:add_proto_expert_info(ef.malformed, "empty record")
		info = "Empty record"
	elseif rlen >= 4 and rec(0, 4):string() == "CRST" then
		info = dissect_handshake(rec, pinfo, item)
	elseif rlen >= 4 and rec(0, 4):string() == "CRTR" then
		info = dissect_tracer(rec, pinfo, item)
	elseif rec(0, 1):uint() == 0x10 then
		info = dissect_secure(rec, pinfo, item)
	else
		item:add(f.type, rec(0, 1))
		item:add(f.body, rec())
		item:add_proto_expert_info(ef.unknown,
			string.format("unknown record type 0x%02x", rec(0, 1):uint()))
		info = string.format("Unknown record 0x%02x, %d bytes", rec(0, 1):uint(), rlen)
	end

	pinfo.cols.protocol:set("CRUST")
	pdus_in_frame = pdus_in_frame + 1
	if pdus_in_frame == 1 then
		pinfo.cols.info:set(info)
	else
		pinfo.cols.info:append("; " .. info)
	end
	return total
end

local function get_pdu_len(tvb, pinfo, offset)
	return tvb(offset, 4):uint() + 4
end

function crust.dissector(tvb, pinfo, tree)
	pdus_in_frame = 0
	dissect_tcp_pdus(tvb, tree, 4, get_pdu_len, dissect_pdu, true)
	return tvb:len()
end

-- A stream is crust when a segment starts with a plausible first record.
local function heuristic(tvb, pinfo, tree)
	if tvb:len() < 8 then return false end
	local rlen = tvb(0, 4):uint()
	local magic = tvb(4, 4):string()
	if magic == "CRST" then
		if rlen < 6 or rlen > 1024 or tvb:len() < 10 then return false end
		local version, typ = tvb(8, 1):uint(), tvb(9, 1):uint()
		if version < 1 or version > 15 or typ < 1 or typ > 3 then return false end
	elseif magic == "CRTR" then
		if rlen < 13 or tvb:len() < 9 or tvb(8, 1):uint() ~= 0x20 then return false end
	else
		return false
	end
	pinfo.conversation = crust
	crust.dissector(tvb, pinfo, tree)
	return true
end
crust:register_heuristic("tcp", heuristic)

local tcp_port = DissectorTable.get("tcp.port")
local registered_port = 0

local function register_port()
	local p = crust.prefs.port
	if p == registered_port then return end
	if registered_port ~= 0 then tcp_port:remove(registered_port, crust) end
	if p ~= 0 then tcp_port:add(p, crust) end
	registered_port = p
end

function crust.prefs_changed()
	register_port()
end

register_port()
