import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { decodeReply, encodeCommand, END_MARKER, MAX_DEPTH, PickleError } from '../../src/fail2ban/pickle.js';

const hex = (text: string) => Buffer.from(text, 'hex');

/** Replies captured from fail2ban 1.0.2 (Python 3.11, pickle protocol 5), marker stripped. */
const captured = {
  // set sync banip 1.2.3.4 5.6.7.8 -> (0, 2)
  banCount: '80059507000000000000004b004b0286942e',
  // get sync banned -> (0, [str('1.2.3.4'), str('5.6.7.8')]) via STACK_GLOBAL builtins.str + REDUCE
  bannedList:
    '8005953a000000000000004b005d94288c086275696c74696e73948c037374729493948c07312e322e332e34948594529468038c07352e362e372e3894859452946586942e',
  // set nope banip 1.1.1.1 -> (1, UnknownJailException('nope'))
  unknownJail:
    '8005953f000000000000004b018c136661696c3262616e2e657863657074696f6e73948c14556e6b6e6f776e4a61696c457863657074696f6e9493948c046e6f7065948594529486942e',
  // banned -> (0, [{'sync': ['2001:db8::1', '10.0.1.0/24', '1.2.3.4']}, {'prim': []}])
  bannedAllJails:
    '8005956c000000000000004b005d94287d948c0473796e63945d94288c086275696c74696e73948c037374729493948c0b323030313a6462383a3a31948594529468068c0b31302e302e312e302f3234948594529468068c07312e322e332e34948594529465737d948c047072696d945d94736586942e',
  // status -> (0, [('Number of jail', 2), ('Jail list', 'prim, sync')])
  status:
    '80059539000000000000004b005d94288c0e4e756d626572206f66206a61696c944b0286948c094a61696c206c697374948c0a7072696d2c2073796e639486946586942e',
  // get sync bantime -> (0, -1) as BININT
  bantime: '8005950a000000000000004b004affffffff86942e',
  // set sync unbanip --report-absent 7.7.7.7 -> (1, ValueError("not banned: ['7.7.7.7']"))
  notBanned:
    '8005953d000000000000004b018c086275696c74696e73948c0a56616c75654572726f729493948c176e6f742062616e6e65643a205b27372e372e372e37275d948594529486942e',
  // get sync foo -> (1, Exception('Invalid command (no get action or not yet implemented)'))
  invalidCommand:
    '8005955b000000000000004b018c086275696c74696e73948c09457863657074696f6e9493948c36496e76616c696420636f6d6d616e6420286e6f2067657420616374696f6e206f72206e6f742079657420696d706c656d656e74656429948594529486942e',
  // a request that is not a pickle -> 'ERROR: pickle data was truncated'
  errorString: '80059524000000000000008c204552524f523a207069636b6c65206461746120776173207472756e6361746564942e',
};

function expectPickleError(buf: Buffer, pattern?: RegExp): void {
  let thrown: unknown;
  try {
    decodeReply(buf);
  } catch (error) {
    thrown = error;
  }
  expect(thrown, 'decodeReply should throw').to.be.instanceOf(PickleError);
  if (pattern) expect((thrown as Error).message).to.match(pattern);
}

describe('fail2ban pickle: encodeCommand', () => {
  it('builds the reference request for ["set","sync-jail","banip","5.6.7.8"]', () => {
    expect(encodeCommand(['set', 'sync-jail', 'banip', '5.6.7.8']).toString('hex')).to.equal(
      '80025d285803000000736574580900000073796e632d6a61696c580500000062616e69705807000000352e362e372e38652e3c4632425f454e445f434f4d4d414e443e',
    );
  });

  it('ends with the marker and decodes back to the same strings, including non-ASCII', () => {
    const args = ['set', 'jail-é', 'banip', '2001:db8::1', '', 'x'.repeat(70_000)];
    const encoded = encodeCommand(args);
    expect(encoded.subarray(-END_MARKER.length).equals(END_MARKER)).to.equal(true);
    expect(decodeReply(encoded.subarray(0, -END_MARKER.length))).to.deep.equal(args);
  });

  it('refuses arguments containing the marker or <F2B_, naming the argument', () => {
    expect(() => encodeCommand(['set', 'j', 'banip', '<F2B_END_COMMAND>'])).to.throw(PickleError, /argument 4.*<F2B_/);
    expect(() => encodeCommand(['set', 'j', 'banip', 'a<F2B_CLOSE_COMMAND>'])).to.throw(PickleError, /<F2B_/);
    expect(() => encodeCommand(['<F2B_'])).to.throw(PickleError, /argument 1/);
  });

  it('refuses an empty command and non-string arguments', () => {
    expect(() => encodeCommand([])).to.throw(PickleError, /at least one argument/);
    expect(() => encodeCommand(['ping', 7 as unknown as string])).to.throw(PickleError, /argument 2: expected a string/);
  });
});

describe('fail2ban pickle: decodeReply of real fail2ban replies', () => {
  it("decodes the reference's ban reply to (0, 1)", () => {
    expect(decodeReply(hex('80059507000000000000004b004b0186942e'))).to.deep.equal([0, 1]);
  });

  it('decodes a ban count', () => {
    expect(decodeReply(hex(captured.banCount))).to.deep.equal([0, 2]);
  });

  it('maps builtins.str(...) in a banned list to plain strings', () => {
    expect(decodeReply(hex(captured.bannedList))).to.deep.equal([0, ['1.2.3.4', '5.6.7.8']]);
  });

  it('maps an UnknownJailException to a pyException marker', () => {
    expect(decodeReply(hex(captured.unknownJail))).to.deep.equal([
      1,
      { pyException: 'fail2ban.exceptions.UnknownJailException', args: ['nope'] },
    ]);
  });

  it('decodes dicts to Maps (the all-jails banned list)', () => {
    const [code, jails] = decodeReply(hex(captured.bannedAllJails)) as [number, Array<Map<string, string[]>>];
    expect(code).to.equal(0);
    expect(jails).to.have.length(2);
    expect(jails[0]).to.be.instanceOf(Map);
    expect([...jails[0]!]).to.deep.equal([['sync', ['2001:db8::1', '10.0.1.0/24', '1.2.3.4']]]);
    expect([...jails[1]!]).to.deep.equal([['prim', []]]);
  });

  it('decodes status, a negative BININT, ValueError and Exception replies', () => {
    expect(decodeReply(hex(captured.status))).to.deep.equal([
      0,
      [
        ['Number of jail', 2],
        ['Jail list', 'prim, sync'],
      ],
    ]);
    expect(decodeReply(hex(captured.bantime))).to.deep.equal([0, -1]);
    expect(decodeReply(hex(captured.notBanned))).to.deep.equal([
      1,
      { pyException: 'builtins.ValueError', args: ["not banned: ['7.7.7.7']"] },
    ]);
    expect(decodeReply(hex(captured.invalidCommand))).to.deep.equal([
      1,
      { pyException: 'builtins.Exception', args: ['Invalid command (no get action or not yet implemented)'] },
    ]);
  });

  it("decodes the server's bare ERROR string", () => {
    expect(decodeReply(hex(captured.errorString))).to.equal('ERROR: pickle data was truncated');
  });
});

describe('fail2ban pickle: decodeReply against Python pickle.dumps', () => {
  // python3 is a dependency of fail2ban, so it is there wherever these tests can run.
  const script = `
import pickle, json
shared = ['s%d' % i for i in range(300)]
values = [1, -1, 300, 70000, -70000, 2**31, 2**53 - 1, 2**53, 2**64, -(2**70), 1.5, -0.25, None, True, False,
          'é', '', 'x' * 300, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), {'a': 1, 2: 'b'}, shared + [shared[299]]]
out = []
for proto in (2, 3, 4, 5):
    out.append({'proto': proto, 'hex': pickle.dumps(values, proto).hex()})
out.append({'proto': 'bytes+sets', 'hex': pickle.dumps([b'\\x00\\xff', {3}, frozenset([4])], 5).hex()})
out.append({'proto': 'exception-p2', 'hex': pickle.dumps((1, ValueError('not banned', 3)), 2).hex()})
print(json.dumps(out))
`;
  const vectors = JSON.parse(execFileSync('python3', ['-c', script], { encoding: 'utf8' })) as Array<{ proto: number | string; hex: string }>;
  const shared = Array.from({ length: 300 }, (_, i) => `s${i}`);
  const expected = [
    1, -1, 300, 70000, -70000, 2 ** 31, Number.MAX_SAFE_INTEGER, 2n ** 53n, 2n ** 64n, -(2n ** 70n), 1.5, -0.25, null, true, false,
    'é', '', 'x'.repeat(300), [], [1], [1, 2], [1, 2, 3], [1, 2, 3, 4],
    new Map<unknown, unknown>([['a', 1], [2, 'b']]),
    [...shared, 's299'],
  ];

  for (const proto of [2, 3, 4, 5]) {
    it(`decodes protocol ${proto} (ints incl. LONG1 bigints, floats, str, tuples, dict, LONG_BINPUT/LONG_BINGET)`, () => {
      const vector = vectors.find((v) => v.proto === proto)!;
      expect(decodeReply(hex(vector.hex))).to.deep.equal(expected);
    });
  }

  it('decodes bytes, set and frozenset (protocol 5)', () => {
    const vector = vectors.find((v) => v.proto === 'bytes+sets')!;
    expect(decodeReply(hex(vector.hex))).to.deep.equal([Buffer.from([0, 0xff]), new Set([3]), new Set([4])]);
  });

  it('maps a protocol 2 exception (GLOBAL exceptions.ValueError) to a pyException', () => {
    const vector = vectors.find((v) => v.proto === 'exception-p2')!;
    expect(decodeReply(hex(vector.hex))).to.deep.equal([1, { pyException: 'exceptions.ValueError', args: ['not banned', 3] }]);
  });
});

describe('fail2ban pickle: hostile input always ends in PickleError, quickly', () => {
  it('refuses every truncation of a real reply', () => {
    const full = hex(captured.bannedAllJails);
    for (let length = 0; length < full.length; length++) expectPickleError(full.subarray(0, length));
  });

  it('refuses unknown opcodes', () => {
    expectPickleError(Buffer.from([0x80, 0x05, 0x69, 0x2e]), /unknown or unsupported opcode 0x69/);
    expectPickleError(Buffer.from([0xff]), /opcode 0xff/);
    expectPickleError(Buffer.from('I1\n.', 'latin1'), /opcode 0x49/); // protocol 0 INT is not needed
  });

  it('refuses lengths beyond the buffer without allocating them', () => {
    expectPickleError(hex('8005' + '58ffffffff' + '61'), /declared length 4294967295 exceeds/);
    expectPickleError(hex('8005' + '8d' + 'ffffffffffffff7f' + '61'), /exceeds/);
    expectPickleError(hex('8005' + '95' + 'ffffffffffffffff' + '4e2e'), /exceeds/);
    expectPickleError(hex('8005' + '8c' + 'ff' + '6161'), /exceeds/);
    expectPickleError(hex('8005' + '42ffffff7f' + '00'), /exceeds/);
    expectPickleError(hex('8005' + '8b' + 'ffffff7f' + '00'), /too large/);
  });

  it('refuses stack underflow, stray MARKs, non-list appends and leftovers', () => {
    expectPickleError(hex('2e'), /0 items on the stack/);
    expectPickleError(hex('61'), /underflow/); // APPEND on an empty stack
    expectPickleError(hex('4b0186'), /TUPLE2 needs 2/);
    expectPickleError(hex('65'), /no MARK/);
    expectPickleError(hex('284e2e'), /unclosed MARK/);
    expectPickleError(hex('5d284e2e'), /unclosed MARK/);
    expectPickleError(hex('4b014b0161'), /not a list/); // APPEND onto an int
    expectPickleError(hex('294b0161'), /not a list/); // APPEND onto a tuple
    expectPickleError(hex('4e4e2e'), /2 items on the stack/);
    expectPickleError(hex('4e2e00'), /after STOP/);
    expectPickleError(hex('6805'), /never stored/);
  });

  it('never calls anything: other classes are refused by name', () => {
    // os.system('id') via STACK_GLOBAL and via GLOBAL
    expectPickleError(hex('8005' + '8c026f73' + '8c0673797374656d' + '93' + '8c026964' + '85' + '52' + '2e'), /os\.system/);
    expectPickleError(Buffer.concat([Buffer.from('cposix\nsystem\n', 'latin1'), hex('8c02696485522e')]), /posix\.system/);
    // builtins.eval, and str() of something that is not a string
    expectPickleError(hex('8c086275696c74696e73' + '8c046576616c' + '93' + '8c0131' + '85' + '52' + '2e'), /builtins\.eval/);
    expectPickleError(hex('8c086275696c74696e73' + '8c03737472' + '93' + '5d' + '85' + '52' + '2e'), /unexpected arguments/);
  });

  it('refuses nesting deeper than MAX_DEPTH (lists and tuples) without overflowing', () => {
    const depth = 200_000;
    expectPickleError(Buffer.concat([Buffer.alloc(depth, 0x5d), Buffer.alloc(depth - 1, 0x61), hex('2e')]), /nested deeper/);
    expectPickleError(Buffer.concat([hex('29'), Buffer.alloc(depth, 0x85), hex('2e')]), /nested deeper/);
    expectPickleError(Buffer.concat([Buffer.alloc(depth, 0x28), hex('2e')]), /STOP/);
    // exactly MAX_DEPTH levels is fine
    const ok = Buffer.concat([hex('29'), Buffer.alloc(MAX_DEPTH - 1, 0x85), hex('2e')]);
    expect(() => decodeReply(ok)).not.to.throw();
  });

  it('refuses reference cycles', () => {
    expectPickleError(hex('5d946800612e'), /cycle/); // l = []; l.append(l)
    expectPickleError(hex('7d944b016800732e'), /cycle/); // d = {}; d[1] = d
  });

  it('refuses shared references that expand exponentially (billion laughs)', () => {
    const parts = [hex('4b0194')]; // memo 0 = 1
    for (let level = 1; level <= 60; level++) parts.push(Buffer.from([0x68, level - 1, 0x86, 0x94])); // t = (t, t)
    parts.push(hex('2e'));
    expectPickleError(Buffer.concat(parts), /unreasonably large/);
  });

  it('survives random and mutated input with nothing but PickleError', () => {
    let seed = 12345;
    const random = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const seeds = Object.values(captured).map(hex);
    for (let round = 0; round < 20_000; round++) {
      let input: Buffer;
      if (round % 2 === 0) {
        input = Buffer.from(Array.from({ length: random() % 64 }, () => random() & 0xff));
      } else {
        input = Buffer.from(seeds[round % seeds.length]!);
        for (let flips = 1 + (random() % 3); flips > 0; flips--) input[random() % input.length] = random() & 0xff;
      }
      try {
        decodeReply(input);
      } catch (error) {
        if (!(error instanceof PickleError)) throw new Error(`non-PickleError for ${input.toString('hex')}: ${String(error)}`);
      }
    }
  });
});
